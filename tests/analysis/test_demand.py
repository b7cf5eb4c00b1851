"""--demand and --instances: parsed, refused with the flag and the item named, matched to price rows."""

import pytest

from conftest import REPO_ROOT
from conftest import exactly
from tfs_bench.analysis import prices
from tfs_bench.analysis.demand import InstanceChoice
from tfs_bench.analysis.demand import parse_demand
from tfs_bench.analysis.demand import parse_instances
from tfs_bench.analysis.demand import select_rows
from tfs_bench.errors import ConfigError

TABLE = prices.read_prices(REPO_ROOT / "configs" / "prices.csv")


def test_demand_items_become_rates_per_model():
    assert parse_demand(["tiny_cnn=2000", " mobilenet_v2_small = 400.5", "resnet50=0"]) == {
        "tiny_cnn": 2000.0, "mobilenet_v2_small": 400.5, "resnet50": 0.0,
    }
    assert parse_demand([]) == {}


# "tiny_cnn=5=5": the model is what comes before the first "=", so the rate "5=5" is no number (split at
# the last "=", it would be read as 5/s of a model named "tiny_cnn=5").
@pytest.mark.parametrize("item", ["tiny_cnn", "=5", "tiny_cnn=", "tiny_cnn=fast", "tiny_cnn=-1", "tiny_cnn=inf", "tiny_cnn=nan",
                                  "tiny_cnn=5=5"])
def test_a_bad_demand_item_is_refused_by_name(item):
    with pytest.raises(ConfigError, match=exactly(
            f"--demand takes MODEL=INFERENCES_PER_S items with a rate >= 0, e.g. tiny_cnn=500, got {item!r}")):
        parse_demand([item])


def test_a_model_demanded_twice_is_refused():
    with pytest.raises(ConfigError, match=exactly("--demand names tiny_cnn twice")):
        parse_demand(["tiny_cnn=1", "tiny_cnn=2"])


def test_instances_name_provider_instance_and_optionally_region():
    assert parse_instances(["AWS:c5.xlarge", "GCP:n1-standard-4 + 1×T4:us-central1"]) == (
        InstanceChoice("AWS", "c5.xlarge"), InstanceChoice("GCP", "n1-standard-4 + 1×T4", "us-central1"),
    )
    assert str(InstanceChoice("GCP", "n1-standard-4 + 1×T4", "us-central1")) == "GCP:n1-standard-4 + 1×T4:us-central1"


@pytest.mark.parametrize("item", ["c5.xlarge", "AWS:", "AWS:c5.xlarge:us-east-1:extra", ":c5.xlarge"])
def test_a_bad_instance_item_is_refused_by_name(item):
    with pytest.raises(ConfigError, match=exactly(
            f"--instances takes PROVIDER:INSTANCE[:REGION] items, e.g. AWS:c5.xlarge, got {item!r}")):
        parse_instances([item])


def test_choices_select_their_rows_in_table_order_and_a_region_narrows():
    c5_rows = [r for r in TABLE if (r.provider, r.instance) == ("AWS", "c5.xlarge")]
    assert c5_rows, "the price table has AWS c5.xlarge"
    g4dn = prices.lookup(TABLE, "AWS", "g4dn.xlarge", "us-east-1")
    chosen = select_rows(TABLE, parse_instances(["AWS:g4dn.xlarge:us-east-1", "AWS:c5.xlarge"]))
    assert list(chosen) == [r for r in TABLE if r in c5_rows or r == g4dn]
    assert select_rows(TABLE, ()) == ()


def test_a_choice_not_in_the_table_is_refused():
    with pytest.raises(ConfigError, match=exactly("--instances: AWS:c5.xlarge:mars-1 is not in the price table")):
        select_rows(TABLE, parse_instances(["AWS:c5.xlarge:mars-1"]))
