"""Which served models tfs_bench.run exports before measuring: missing ones and old export formats."""

import dataclasses
import json

import pytest

from plan_support import model_card
from tfs_bench.errors import ModelError
from tfs_bench.export import modelcard
from tfs_bench.run import orchestrate


def _version(tmp_path, card):
    version = tmp_path / "tiny_cnn" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    if card is not None:
        modelcard.write_card(version, card)
    return version


def test_a_missing_model_is_exported(tmp_path):
    assert orchestrate._needs_export(str(tmp_path / "tiny_cnn"))


def test_a_current_export_is_kept(tmp_path):
    _version(tmp_path, model_card("tiny_cnn", None))

    assert not orchestrate._needs_export(str(tmp_path / "tiny_cnn"))


def test_a_savedmodel_without_our_card_is_served_as_it_is(tmp_path):
    _version(tmp_path, None)

    assert not orchestrate._needs_export(str(tmp_path / "tiny_cnn"))


def test_a_card_written_before_the_format_field_is_format_1_and_redone(tmp_path):
    version = _version(tmp_path, model_card("tiny_cnn", None))
    path = modelcard.card_path(version)
    document = json.loads(path.read_text())
    del document["export_format"]
    path.write_text(json.dumps(document))

    assert modelcard.read_card(version).export_format == 1
    assert orchestrate._needs_export(str(tmp_path / "tiny_cnn"))


def test_an_old_export_from_a_weights_file_is_not_overwritten(tmp_path):
    card = dataclasses.replace(model_card("tiny_cnn", None), weights="/data/tiny.weights.h5", export_format=1)
    _version(tmp_path, card)

    with pytest.raises(ModelError, match=r"export format 1.*python -m tfs_bench\.export --models=tiny_cnn "
                                         r"--weights=/data/tiny\.weights\.h5 --input_encoding=float32 --overwrite"):
        orchestrate._needs_export(str(tmp_path / "tiny_cnn"))
