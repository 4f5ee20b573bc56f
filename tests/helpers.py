"""Shared test fixtures: a tiny valid config (short cue-accumulation trials, 16 neurons)."""

TINY = {
    "task": {"name": "cue_accumulation",
             "params": {"n_cues": 3, "cue_ms": 20, "gap_ms": 10, "delay_ms": 20, "decision_ms": 20}},
    "neuron": {"n_lif": 8, "n_alif": 8},
    "network": {"grid_h": 4, "grid_w": 4},
    "train": {"batch_size": 8, "micro_batches": 2, "eval_trials": 16, "eval_batch": 8,
              "iterations": 6, "eval_every": 2, "checkpoint_every": 2, "dtype": "float64",
              "progress": False},
}


def tiny(**train) -> dict:
    """A deep copy of TINY with ``train`` entries replaced."""
    import copy
    data = copy.deepcopy(TINY)
    data["train"].update(train)
    return data
