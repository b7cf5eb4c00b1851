"""The analysis stage: tables from measured results (cost model and price table so far).

- `prices`: configs/prices.csv, the dated price table, read and checked into `PriceRow`s.
- `cost`: pure cost-model functions: $/1M inferences, normalised capacity and sharing savings,
  interference, machines for a demand (dedicated and shared), and the cheapest way to serve it.
- `tables`: those records as pandas DataFrames with fixed columns, written as CSV and Parquet.
"""
