"""`lava-diffmod reproduce fig2`: the protocol's conditions, resumable runs, the alignment log,
the table, figures and report, and the acceptance checks on known tables."""
import json

import pytest

from lava_diffmod import cli
from lava_diffmod import reproduce as R
from lava_diffmod.config import ConfigError
from lava_diffmod.training import trainer

from helpers import TINY

TINY_SETS = {"task.params": TINY["task"]["params"], "neuron.n_lif": 8, "neuron.n_alif": 8,
             "network.grid_h": 4, "network.grid_w": 4, "train.batch_size": 8, "train.micro_batches": 2,
             "train.eval_trials": 16, "train.eval_batch": 8, "train.eval_every": 1, "train.checkpoint_every": 1,
             "train.dtype": "float64"}


def test_the_protocol_lists_every_condition():
    conds = R.conditions(list(R.TASKS), list(R.DEFAULT_GROUPS))
    # 3 tasks x 3 rules, k-sweep 2 x 3, shuffled 2, fixed 3 x 2 + eps^a on chip for the 2 ALIF tasks
    assert len(conds) == 9 + 6 + 2 + 6 + 2
    eps_a = next(c for c in conds if c.name == "fixed_diffusion_eps_a")
    assert eps_a.overrides["fixed.switches"]["eps_a_tag2"] and eps_a.task in R.SWEEP_TASKS
    extra = R.conditions(["dms"], ["extra"])
    assert [(c.name, c.rule) for c in extra] == [("modprop", "modprop"), ("dopamine", "dopamine")]
    assert {c.name for c in conds if c.task == "pattern_generation"} == {"bptt", "eprop", "diffusion",
                                                                        "fixed_eprop", "fixed_diffusion"}
    shuffled = next(c for c in conds if c.name == "shuffled")
    assert shuffled.overrides["diffusion.shuffle"] == "fixed" and shuffled.rule == "diffusion"
    with pytest.raises(ConfigError, match="--groups 'nope'"):
        R.conditions(["dms"], ["nope"])
    with pytest.raises(ConfigError, match="--tasks 'xor'"):
        R.conditions(["xor"], ["main"])


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig2")
    res = R.run(out, ["cue_accumulation"], ["main", "extra"], [1, 2], iterations=2, align_every=1, extra=TINY_SETS,
                progress=False)
    return out, res


def test_runs_table_figures_and_report(protocol):
    out, res = protocol
    assert [r["condition"] for r in res["table"]] == ["bptt", "eprop", "diffusion", "modprop", "dopamine"]
    assert all(r["seeds"] == 2 and r["iteration"] == 2 and 0 <= r["accuracy"] <= 1 for r in res["table"])
    assert json.loads((out / "table.json").read_text()) == res["table"]
    assert (out / "table.csv").read_text().startswith("task,condition,group,rule,backend")
    for name in ("learning_curves", "final_metrics", "alignment"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    text = (out / "report.md").read_text()
    assert "96.8 ± 1.7 %" in text          # the authors' BPTT accuracy beside ours
    assert "## Checks" in text and "cue_accumulation: BPTT beats diffusion" in text


def test_alignment_is_logged_for_the_e_prop_rules_only(protocol):
    out, _ = protocol
    for rule in ("eprop", "diffusion", "modprop", "dopamine"):
        rows = [r for r in trainer.read_metrics(out / "cue_accumulation" / rule) if r["split"] == "align"]
        assert sorted({r["iteration"] for r in rows}) == [1, 2] and len(rows) == 4
        assert all(-1 <= r["cos_w_rec"] <= 1 and 0 <= r["angle_w_rec"] <= 180 for r in rows)
    assert not [r for r in trainer.read_metrics(out / "cue_accumulation" / "bptt") if r["split"] == "align"]


def test_finished_runs_are_skipped_and_interrupted_runs_resume(protocol):
    out, _ = protocol
    cond = R.conditions(["cue_accumulation"], ["main"])[1]
    cfg = R.condition_config(cond, [1, 2], 2, "cpu", 1, TINY_SETS)
    run_dir = out / "cue_accumulation" / cond.name
    assert R.run_condition(cond, run_dir, cfg, progress=False) == "done"
    final = json.loads((run_dir / "summary.json").read_text())["final"]
    (run_dir / "summary.json").unlink()                   # as if killed after the last checkpoint
    assert R.run_condition(cond, run_dir, cfg, progress=False) == "resumed"
    assert json.loads((run_dir / "summary.json").read_text())["final"] == final


def test_report_only_rebuilds_from_finished_runs(protocol, capsys):
    out, _ = protocol
    (out / "report.md").unlink()
    assert cli.main(["reproduce", "fig2", "--out", str(out), "--report-only"]) == 0
    assert "diffusion" in capsys.readouterr().out and (out / "report.md").is_file()


def row(task, cond, backend, key, mean, ci):
    return {"task": task, "condition": cond, "backend": backend, key: mean, f"{key}_ci95": ci}


def test_checks_order_ci_overlap_authors_interval_and_fixed_gap():
    table = [row("cue_accumulation", "bptt", "float", "accuracy", 0.97, 0.01),
             row("cue_accumulation", "diffusion", "float", "accuracy", 0.93, 0.01),
             row("cue_accumulation", "eprop", "float", "accuracy", 0.92, 0.02),
             row("cue_accumulation", "fixed_diffusion", "fixed", "accuracy", 0.89, 0.01),
             row("cue_accumulation", "fixed_diffusion_eps_a", "fixed", "accuracy", 0.91, 0.01),
             row("pattern_generation", "bptt", "float", "nmse", 0.004, 0.0005),
             row("pattern_generation", "diffusion", "float", "nmse", 0.02, 0.002),
             row("pattern_generation", "eprop", "float", "nmse", 0.08, 0.01),
             row("pattern_generation", "fixed_diffusion", "fixed", "nmse", 0.05, 0.01)]
    lines = R.checks(table)
    assert "- cue_accumulation: BPTT beats diffusion with non-overlapping 95% CIs: yes; diffusion beats " \
           "e-prop: NO" in lines                                     # 0.93 ± 0.01 overlaps 0.92 ± 0.02
    assert any("pattern_generation: BPTT beats diffusion with non-overlapping 95% CIs: yes; diffusion beats "
               "e-prop: yes" in x for x in lines)
    assert any("cue_accumulation diffusion: ours 93.0 ± 1.0 %" in x and "within" in x for x in lines)
    assert any("cue_accumulation eprop" in x and "OUTSIDE" in x for x in lines)   # 92 vs 86.0 ± 1.8
    assert any("minus fixed_diffusion accuracy = 4.0 points: NOT within 3 points" in x for x in lines)
    assert any("minus fixed_diffusion_eps_a accuracy = 2.0 points: within 3 points" in x for x in lines)
    assert any("fixed_diffusion nMSE is 2.50x float diffusion: NOT within 2x" in x for x in lines)


def test_bad_options_fail_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match="--iterations 0"):
        R.run(tmp_path, ["dms"], ["main"], [1], iterations=0)
    assert cli.main(["reproduce", "fig2", "--out", str(tmp_path), "--set", "train.lr"]) == 2
    assert not any(tmp_path.iterdir())


def test_alignment_identities():
    import torch
    from lava_diffmod.float.rsnn import Params
    g = Params(*(torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(3)))
    same = trainer.alignment(g, g)
    one = torch.ones(2, dtype=torch.float64)
    assert torch.allclose(same["cos_w_rec"], one) and torch.allclose(same["angle_w_rec"], 0 * one, atol=1e-5)
    opposite = trainer.alignment(Params(*(-t for t in g)), g)
    assert torch.allclose(opposite["angle_w_rec"], torch.full((2,), 180.0, dtype=torch.float64))
    zero = trainer.alignment(Params(*(torch.zeros_like(t) for t in g)), g)
    assert torch.isnan(zero["cos_w_in"]).all()


def test_the_fixed_backend_logs_the_alignment_of_its_weight_change(tmp_path):
    from lava_diffmod import config as C
    cfg = C.from_mapping(TINY, {"train.backend": "fixed", "train.iterations": 2, "train.align_every": 1})
    trainer.train(cfg, tmp_path / "run")
    rows = [r for r in trainer.read_metrics(tmp_path / "run") if r["split"] == "align"]
    assert len(rows) == 2 and all(-1 <= r["cos_w_rec"] <= 1 for r in rows)
