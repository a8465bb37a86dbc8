"""Training curves: window means, learning-rate steps, table and plot from hand-made ``metrics.jsonl`` rows."""

import json

import pytest

from tracenet.train.curves import LOSS_KEYS, lr_steps, main, markdown_table, read_metrics, window_means


def _row(step, lr, loss):
    """A row whose parts are fixed fractions of ``loss`` (so every key's mean is checkable by hand)."""
    return {"step": step, "lr": lr, "loss": loss, "loss_cls": loss / 2, "loss_box": loss / 4, "loss_ctr": 1.0,
            "loss_mask": loss / 8, "s_per_iter": 2.0}


ROWS = [_row(5, 0.01, 4.0), _row(10, 0.01, 2.0), _row(15, 0.001, 1.0), _row(20, 0.001, 3.0), _row(30, 0.0001, 0.5)]


def test_window_means_by_hand():
    """Windows of 10 iterations: (0, 10] holds steps 5 and 10, (10, 20] steps 15 and 20, (20, 30] step 30."""
    means = window_means(ROWS, 10)
    assert means.ends == (10, 20, 30)
    assert means.values["loss"] == (3.0, 2.0, 0.5)
    assert means.values["loss_cls"] == (1.5, 1.0, 0.25)
    assert means.values["loss_ctr"] == (1.0, 1.0, 1.0)


def test_window_skips_empty_windows_and_rejects_bad_sizes():
    means = window_means([_row(5, 0.1, 1.0), _row(35, 0.1, 3.0)], 10)
    assert means.ends == (10, 40) and means.values["loss"] == (1.0, 3.0)
    with pytest.raises(ValueError, match="window"):
        window_means(ROWS, 0)
    with pytest.raises(ValueError, match="step 7 has no 'loss_mask'"):
        window_means([{"step": 7, "loss": 1.0, "loss_cls": 1, "loss_box": 1, "loss_ctr": 1}], 5)


def test_lr_steps_are_decays_not_warmup():
    warmup = [{"step": s, "lr": 0.001 * s} for s in (1, 2, 3)]
    assert lr_steps(warmup + [{"step": 4, "lr": 0.003}]) == []
    assert lr_steps(ROWS) == [15, 30]
    assert lr_steps([{"step": 1, "lr": 1.0}, {"step": 2, "lr": 0.6}]) == []


def test_markdown_table_rows():
    table = markdown_table(window_means(ROWS, 10))
    lines = table.splitlines()
    assert lines[0] == "| iterations | " + " | ".join(LOSS_KEYS) + " |"
    assert lines[2] == "| 1-10 | 3.000 | 1.500 | 0.750 | 1.000 | 0.375 |"
    assert lines[4] == "| 21-30 | 0.500 | 0.250 | 0.125 | 1.000 | 0.062 |"


def test_read_metrics_skips_evaluation_rows(tmp_path):
    """A run trained with an evaluation hook interleaves ``{"step", "eval"}`` rows (Trainer.evaluate)."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"step": 5, "eval": {"miou_t": 0.2}}) + "\n"
                    + json.dumps(ROWS[1]) + "\n")
    assert read_metrics(path) == ROWS[:2]
    assert lr_steps(read_metrics(path)) == []


def test_read_metrics_errors_name_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{broken\n")
    with pytest.raises(ValueError, match="line 3: not JSON"):
        read_metrics(tmp_path)
    path.write_text(json.dumps({"step": "5"}) + "\n")
    with pytest.raises(ValueError, match="line 1: expected an object with an integer 'step'"):
        read_metrics(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no metric rows"):
        read_metrics(path)


def test_cli_table_and_plot(tmp_path, capsys):
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "plots" / "loss.png"
    assert main([str(run), "--window", "10", "--table", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "my-run (learning-rate steps at [15, 30])" in printed
    assert "| 11-20 | 2.000 | 1.000 | 0.500 | 1.000 | 0.250 |" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([str(tmp_path / "missing")]) == 2
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "lr": 0.1, "loss": 1.0}) + "\n")
    assert main([str(run), "--out", str(out)]) == 2  # a row without the loss parts: an error, not a traceback
