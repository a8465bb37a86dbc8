"""Bad export folders: a clear error naming the file (exit code 2 in the CLI), nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tracenet.cli import main
from tracenet.deploy.contract import ContractError, file_sha256
from tracenet.deploy.engine import OnnxTapSegmenter


@pytest.fixture()
def export_copy(tiny_export, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "copy"))


def _edit_contract(folder: Path, change) -> None:
    path = folder / "model.json"
    contract = json.loads(path.read_text())
    change(contract)
    path.write_text(json.dumps(contract))


def test_missing_folder_and_missing_contract(tmp_path) -> None:
    with pytest.raises(ContractError, match="no such export folder"):
        OnnxTapSegmenter(tmp_path / "nope")
    with pytest.raises(ContractError, match=r"model\.json: missing"):
        OnnxTapSegmenter(tmp_path)


def test_contract_from_another_version(export_copy) -> None:
    _edit_contract(export_copy, lambda c: c.update(tracenet_version="0.0.1"))
    with pytest.raises(ContractError, match=r"model\.json: written by tracenet 0\.0\.1"):
        OnnxTapSegmenter(export_copy)


def test_graph_from_another_export(export_copy) -> None:
    shutil.copy(export_copy / "decoder.onnx", export_copy / "encoder.onnx")
    with pytest.raises(ContractError, match=r"encoder\.onnx: does not match .*model\.json"):
        OnnxTapSegmenter(export_copy)


def test_graph_that_breaks_the_contract(export_copy) -> None:
    # a valid ONNX file whose inputs / outputs are not the encoder's, with the hash made to match
    shutil.copy(export_copy / "decoder.onnx", export_copy / "encoder.onnx")
    digest = file_sha256(export_copy / "encoder.onnx")
    _edit_contract(export_copy, lambda c: c["files"]["encoder.onnx"].update(sha256=digest))
    with pytest.raises(ContractError, match=r"encoder\.onnx: its inputs .* do not match the contract"):
        OnnxTapSegmenter(export_copy)


def test_unreadable_graph(export_copy) -> None:
    (export_copy / "decoder.onnx").write_bytes(b"not an onnx file")
    digest = file_sha256(export_copy / "decoder.onnx")
    _edit_contract(export_copy, lambda c: c["files"]["decoder.onnx"].update(sha256=digest))
    with pytest.raises(ContractError, match=r"decoder\.onnx: onnxruntime cannot load it"):
        OnnxTapSegmenter(export_copy)


def test_cli_exit_code_2_and_no_output(export_copy, tmp_path, capsys) -> None:
    _edit_contract(export_copy, lambda c: c.update(format_version=99))
    out = tmp_path / "mask.png"
    code = main(["segment", str(Path(__file__).resolve().parents[2] / "tracenet/examples/cat.png"), "--tap", "10,10", "--engine", "onnx",
                 "--checkpoint", str(export_copy), "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "model.json" in capsys.readouterr().err
    code = main(["export", "--format", "onnx", "--out", str(tmp_path / "x"), "--checkpoint",
                 str(tmp_path / "missing.safetensors")])
    assert code == 2 and not (tmp_path / "x").exists()
