"""The report stage: re-renders an experiment's run directories into report.md, a self-contained
report.html, PNG plots and CSV/Parquet tables, without measuring anything.

- `build`: read the runs, compute the tables and write the report (`write_report`).
- `sections`: the headline and the nine sections as document blocks.
- `plots`: the figures (matplotlib).
- `document`: blocks rendered as Markdown and HTML.
"""
