"""Hardware profiles (LOIHI.md §8): the shipped files, the loader's refusals, the resource
report, the energy estimate and `lava-diffmod profile`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w

from lava_diffmod import cli, hw
from lava_diffmod import config as C
from lava_diffmod.hw import SCHEMA, UNKNOWN, ProfileError, load_profile
from lava_diffmod.network.structure import build_structure

from helpers import tiny

ROOT = Path(__file__).resolve().parent.parent
CUE = str(ROOT / "examples" / "cue_accumulation.toml")
SHIPPED = ["ideal", "lava_sim_0_10", "loihi1", "loihi2"]
ENERGY = ["e_synop_pJ", "e_synupdate_pJ", "e_neuron_update_pJ"]
# markers in a source string that LOIHI.md's labels make unverified
UNVERIFIED_MARK = re.compile(r"\(U[;)]|\[open\]|\[inference\]|placeholder|^ours")


def write_profile(path: Path, keys: dict, inherits: str | None = "loihi2", name: str = "mine", **head) -> Path:
    """A user profile file; ``keys`` maps key → value (source 'test', unverified)."""
    data = {"profile": {"name": name, **({"inherits": inherits} if inherits else {}), **head},
            "keys": {k: {"value": v, "source": "test", "verified": False} for k, v in keys.items()}}
    path.write_text(tomli_w.dumps(data))
    return path


def full_keys(profile) -> dict:
    """Every key of a loaded profile as file entries (pairs back to lists)."""
    return {k: {"value": list(v) if isinstance(v, tuple) else v, "source": profile.sources[k],
                "verified": profile.verified[k]} for k, v in profile.values.items()}


# ---------------------------------------------------------------------------------------------
# shipped profiles
# ---------------------------------------------------------------------------------------------

def test_shipped_profiles_are_the_four():
    assert hw.shipped_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads(name):
    p = load_profile(name)
    assert p.name == name and p.description
    if name != "ideal":
        assert set(p.values) == set(SCHEMA)
        assert all(p.sources[k].strip() for k in SCHEMA)
        assert all(isinstance(p.verified[k], bool) for k in SCHEMA)


@pytest.mark.parametrize("name", ["loihi1", "loihi2", "lava_sim_0_10"])
def test_labels_and_unknowns_are_unverified(name):
    """U, [open], [inference], placeholders, our own proposals and unknowns carry verified = false."""
    p = load_profile(name)
    for key in SCHEMA:
        if UNVERIFIED_MARK.search(p.sources[key]) or p.values[key] == UNKNOWN:
            assert p.verified[key] is False, (name, key, p.sources[key])


@pytest.mark.parametrize("name", ["loihi1", "loihi2", "lava_sim_0_10"])
def test_every_energy_figure_is_unverified(name):
    p = load_profile(name)
    assert all(p.verified[k] is False for k in ENERGY)


@pytest.mark.parametrize("key, value", [
    ("weight_bits", 8), ("trace_bits", 7), ("tag_bits", 9),  # tag t: "9 signed" = 8 bits + sign
    ("learn_frac_bits", 7), ("learn_acc_bits", 16), ("decay_bits", 12), ("epoch_time_bits", 6),
    ("learn_overflow_offset", 4), ("du_offset", 1), ("act_shift", 6), ("vth_bits", 17),
    ("vth_shift", 6), ("bias_mant_bits", 13), ("bias_exp_range", (0, 7)), ("s_mant_bits", 4),
    ("s_exp_range", (-7, 8)), ("state_bits_u", 24), ("state_bits_v", 24), ("u_overflow", "wrap"),
    ("v_overflow", "saturate"), ("mixed_sign_lsb_loss", True), ("third_factor_bits", 7),
    ("third_factor_signed", False), ("trace_impulse_frac_bits", 8), ("impulse_frac_doubling", False),
    ("n_x_traces", 2), ("n_y_traces", 3), ("dense_delay_steps", 1), ("cores_per_chip", 128),
    ("neurons_per_core", 8192), ("fanin_axons", UNKNOWN), ("fanout_axons", UNKNOWN),
    ("state_bits_adapt", 24), ("e_synop_pJ", UNKNOWN), ("enforces_limits", True),
])
def test_loihi2_values_match_loihi_md(key, value):
    assert load_profile("loihi2")[key] == value


@pytest.mark.parametrize("key, value", [
    ("learn_overflow_offset", 3), ("third_factor_bits", 8), ("third_factor_signed", True),
    ("trace_impulse_frac_bits", 7), ("neurons_per_core", 1024), ("fanin_axons", 4096),
    ("fanout_axons", 4096), ("syn_mem_bits_per_core", 16384 * 64), ("syn_acc_bits", 21),
    ("refractory_max_steps", 63), ("graded_spike_bits", 0), ("weight_exp_range", (-7, 0)),
    ("e_synop_pJ", 23.6), ("e_synupdate_pJ", 120.0), ("e_neuron_update_pJ", UNKNOWN),
    ("shared_rounding_rng", UNKNOWN),
])
def test_loihi1_values_match_loihi_md(key, value):
    assert load_profile("loihi1")[key] == value


def test_lava_sim_inherits_loihi2_and_differs_only_in_the_simulator_quirks():
    base, sim = load_profile("loihi2"), load_profile("lava_sim_0_10")
    differ = {k for k in SCHEMA if sim.values[k] != base.values[k]}
    assert differ == {"impulse_frac_doubling", "shared_rounding_rng", "syn_acc_bits", "tag2_bits",
                      "epoch_time_bits", "enforces_limits"}
    assert sim["impulse_frac_doubling"] is True and sim["shared_rounding_rng"] is True
    assert sim["enforces_limits"] is False and sim["tag2_bits"] == 8
    same = set(SCHEMA) - differ
    assert all(sim.sources[k] == base.sources[k] and sim.verified[k] == base.verified[k] for k in same)


def test_ideal_profile_has_no_keys():
    p = load_profile("ideal")
    assert p.ideal and p.values == {} and not p.known("weight_bits")
    with pytest.raises(KeyError):
        p["weight_bits"]


def test_user_profile_by_path_inheriting(tmp_path):
    p = load_profile(write_profile(tmp_path / "mine.toml", {"neurons_per_core": 10}))
    assert p.name == "mine" and p["neurons_per_core"] == 10 and p.verified["neurons_per_core"] is False
    assert p["weight_bits"] == 8 and p.sources["weight_bits"] == load_profile("loihi2").sources["weight_bits"]


def test_user_profile_by_path_self_contained(tmp_path):
    base = load_profile("loihi1")
    path = tmp_path / "copy.toml"
    path.write_text(tomli_w.dumps({"profile": {"name": "copy"}, "keys": full_keys(base)}))
    p = load_profile(str(path))
    assert p.values == base.values and p.verified == base.verified


# ---------------------------------------------------------------------------------------------
# the loader's refusals: one line naming the key
# ---------------------------------------------------------------------------------------------

def one_line_error(target) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(target)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, C.ConfigError)
    return msg


@pytest.mark.parametrize("keys, needle", [
    ({"warp_drive": 1}, "keys.warp_drive: unknown key"),
    ({"weight_bits": "8"}, "keys.weight_bits"),                      # wrong type
    ({"weight_bits": 8.5}, "keys.weight_bits"),                      # float for an integer
    ({"mixed_sign_lsb_loss": 1}, "keys.mixed_sign_lsb_loss"),        # int for a bool
    ({"weight_bits": 99}, "keys.weight_bits = 99"),                  # out of range
    ({"bias_exp_range": [3, 1]}, "keys.bias_exp_range"),             # lo > hi
    ({"u_overflow": "clip"}, "keys.u_overflow"),                     # bad choice
    ({"weight_bits": "unknown"}, "keys.weight_bits = 'unknown' is not allowed"),
])
def test_bad_value_names_the_key(tmp_path, keys, needle):
    assert needle in one_line_error(write_profile(tmp_path / "bad.toml", keys))


def test_unknown_table(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[profile]\nname = "x"\ninherits = "loihi2"\n[extra]\na = 1\n')
    assert "[extra]" in one_line_error(path)


def test_missing_key_without_inherits(tmp_path):
    msg = one_line_error(write_profile(tmp_path / "bad.toml", {"weight_bits": 8}, inherits=None))
    assert "missing" in msg and re.search(r"keys\.\w+: missing", msg)


def test_missing_source(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[profile]\nname = "x"\ninherits = "loihi2"\n[keys]\n'
                    'weight_bits = { value = 8, verified = true }\n')
    assert "keys.weight_bits: needs a non-empty source" in one_line_error(path)


def test_missing_verified(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[profile]\nname = "x"\ninherits = "loihi2"\n[keys]\n'
                    'weight_bits = { value = 8, source = "me" }\n')
    assert "keys.weight_bits.verified" in one_line_error(path)


def test_bad_inherits(tmp_path):
    msg = one_line_error(write_profile(tmp_path / "bad.toml", {}, inherits="loihi9"))
    assert "profile.inherits = 'loihi9'" in msg and "loihi2" in msg


def test_invalid_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[profile\nname = ")
    assert "not valid TOML" in one_line_error(path)


def test_missing_file(tmp_path):
    assert "not found" in one_line_error(tmp_path / "absent.toml")


def test_unknown_shipped_name():
    msg = one_line_error("loihi3")
    assert "'loihi3'" in msg and "not found" in msg and "loihi2" in msg


def test_ideal_profile_with_keys_refused(tmp_path):
    msg = one_line_error(write_profile(tmp_path / "bad.toml", {"weight_bits": 8}, inherits=None, ideal=True))
    assert "ideal" in msg


# ---------------------------------------------------------------------------------------------
# resource report
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cue():
    return C.load(CUE)


def small_cfg(**over):
    return C.from_mapping(tiny(), over)


def test_cue_accumulation_fits_loihi2_on_one_chip(cue):
    rep = hw.resource_report(cue, load_profile("loihi2"), 40, 2, 1)
    assert rep["fits"] and rep["chip_fits"] and rep["chips"] == 1 and rep["reasons"] == []
    c = rep["components"]
    assert (c["recurrent"], c["readout"], c["error"], c["grid"], c["input_axons"]) == (100, 2, 4, 100, 40)
    rows = {r["name"]: r for r in rep["limits"]}
    assert rows["neurons per core"]["limit"] == 8192 and rows["neurons per core"]["status"] == "OK"
    # Loihi 2's fan-in limit is not public: reported, not enforced
    assert rows["fan-in axons per core"]["status"] == "unknown"
    assert not rows["fan-in axons per core"]["enforced"]
    assert any("unknown" in n and "fan-in" in n for n in rep["notes"])


def test_synapse_counts_and_memory_follow_the_structure():
    cfg = small_cfg()
    n_in, n_out = 40, 2
    st = build_structure(cfg, n_in, n_out, 3)
    rep = hw.resource_report(cfg, load_profile("loihi1"), n_in, n_out, 3)
    syn = rep["synapses"]
    assert syn["input"] == int((st.m_in != 0).sum()) and syn["recurrent"] == int((st.m_rec != 0).sum())
    assert syn["readout"] == int((st.m_out != 0).sum())
    assert syn["feedback"] == 2 * int((st.feedback != 0).sum())     # from error units m+ and m-
    assert syn["diffusion"] == 9 * 16                                # radius 1 on a 4 x 4 grid
    assert syn["third_factor"] == 16 and syn["error"] == 2 * 2 * n_out
    assert rep["plastic_synapses"] == syn["input"] + syn["recurrent"] + syn["readout"]
    assert rep["bits_per_synapse"] == {"fixed": 9, "learning": 18}     # 8 + sign; + 9-bit tag
    fixed = syn["total"] - rep["plastic_synapses"]
    assert sum(c["mem_bits"] for c in rep["core_table"]) == 18 * rep["plastic_synapses"] + 9 * fixed
    assert sum(c["synapses"] for c in rep["core_table"]) == syn["total"]


def test_eprop_and_bptt_components():
    eprop = hw.resource_report(small_cfg(**{"rule.name": "eprop"}), load_profile("loihi2"), 40, 2, 1)
    assert eprop["components"]["grid"] == 0 and "diffusion" not in eprop["synapses"]
    bptt = hw.resource_report(small_cfg(**{"rule.name": "bptt"}), load_profile("loihi2"), 40, 2, 1)
    assert bptt["components"]["error"] == 0 and bptt["plastic_synapses"] == 0
    assert bptt["bits_per_synapse"] == {"fixed": 9, "learning": 9}
    assert any("bptt" in n for n in bptt["notes"])


def test_tiny_cores_need_many_cores(cue, tmp_path):
    prof = load_profile(write_profile(tmp_path / "tiny.toml", {"neurons_per_core": 10}))
    rep = hw.resource_report(cue, prof, 40, 2, 1)
    assert rep["fits"] and rep["cores"]["recurrent"] == 10 and rep["cores"]["grid"] == 10
    assert rep["cores"]["total"] == 10 + 1 + 1 + 10
    assert max(c["neurons"] for c in rep["core_table"]) <= 10


def test_small_fanin_does_not_fit_and_names_the_reason(cue, tmp_path):
    prof = load_profile(write_profile(tmp_path / "narrow.toml", {"fanin_axons": 20}))
    rep = hw.resource_report(cue, prof, 40, 2, 1)
    assert not rep["fits"] and rep["reasons"]
    assert all(re.fullmatch(r"core \d+ \(\w+\) needs \d+ fan-in axons > 20( \(one compartment alone\))?", r)
               for r in rep["reasons"])
    rows = {r["name"]: r for r in rep["limits"]}
    assert rows["fan-in axons per core"]["status"] == "EXCEEDED"
    # the packer respects the limit wherever one compartment alone does not break it
    alone = {int(r.split()[1]) for r in rep["reasons"]}
    assert all(c["fanin"] <= 20 or c["core"] in alone for c in rep["core_table"])


def test_simulator_reports_but_does_not_enforce(cue, tmp_path):
    prof = load_profile(write_profile(tmp_path / "sim.toml", {"fanin_axons": 20}, inherits="lava_sim_0_10"))
    rep = hw.resource_report(cue, prof, 40, 2, 1)
    assert rep["fits"] and not rep["chip_fits"] and rep["reasons"]
    assert any("simulator" in n for n in rep["notes"])


def test_ideal_profile_maps_nothing(cue):
    rep = hw.resource_report(cue, load_profile("ideal"), 40, 2, 1)
    assert rep["fits"] and rep["limits"] == [] and rep["synapses"]["total"] > 0


def test_trial_counts_by_hand():
    cfg = small_cfg()
    n_in, n_out, seed = 40, 2, 0
    st = build_structure(cfg, n_in, n_out, seed)
    s_in = [1.0 if i % 3 == 0 else 0.0 for i in range(n_in)]
    s_rec = [float(j % 4) for j in range(16)]
    rep = hw.resource_report(cfg, load_profile("loihi2"), n_in, n_out, seed,
                             {"input": s_in, "recurrent": s_rec, "steps": 50})
    out_in = (st.m_in != 0).sum(1).tolist()
    out_rec = ((st.m_rec != 0).sum(1) + (st.m_out != 0).sum(1)).tolist()
    synops = sum(a * b for a, b in zip(s_in, out_in)) + sum(a * b for a, b in zip(s_rec, out_rec))
    cnt = rep["counts"]
    assert cnt["synops"] == synops
    assert cnt["synupdates"] == rep["plastic_synapses"] * 50
    assert cnt["neuron_updates"] == (16 + n_out + 2 * n_out + 16) * 50
    assert rep["energy"]["total_pJ"] == UNKNOWN


def test_trial_spike_counts_from_a_forward_pass():
    cfg = small_cfg()
    sc = hw.trial_spike_counts(cfg, 0, trials=2)
    assert sc["input"].shape == (40,) and sc["recurrent"].shape == (16,) and sc["trials"] == 2
    assert sc["steps"] > 0 and sc["input"].sum() > 0


# ---------------------------------------------------------------------------------------------
# energy
# ---------------------------------------------------------------------------------------------

COUNTS = {"synops": 1000, "synupdates": 10, "neuron_updates": 5}


def test_energy_terms_and_total_by_hand():
    en = hw.energy_per_trial(load_profile("loihi1"), COUNTS)
    terms = {t["term"]: t for t in en["terms"]}
    assert terms["synops"]["energy_pJ"] == pytest.approx(1000 * 23.6)
    assert terms["synupdates"]["energy_pJ"] == pytest.approx(10 * 120.0)
    assert terms["neuron_updates"]["energy_pJ"] == UNKNOWN
    assert en["total_pJ"] == pytest.approx(23600 + 1200) and en["partial"]
    assert all("unverified" in t["flags"] for t in en["terms"])
    assert set(en["unverified"]) == set(ENERGY)


def test_energy_unknown_figures():
    en = hw.energy_per_trial(load_profile("loihi2"), COUNTS)
    assert all(t["energy_pJ"] == UNKNOWN for t in en["terms"]) and en["total_pJ"] == UNKNOWN
    assert hw.energy_per_trial(load_profile("ideal"), COUNTS)["total_pJ"] == UNKNOWN


def test_energy_verified_figures_carry_no_flag(tmp_path):
    path = tmp_path / "e.toml"
    keys = {k: {"value": v, "source": "my measurement", "verified": True}
            for k, v in (("e_synop_pJ", 2.0), ("e_synupdate_pJ", 3.0), ("e_neuron_update_pJ", 0.5))}
    path.write_text(tomli_w.dumps({"profile": {"name": "e", "inherits": "loihi2"}, "keys": keys}))
    en = hw.energy_per_trial(load_profile(path), COUNTS)
    assert en["total_pJ"] == pytest.approx(2000 + 30 + 2.5) and not en["partial"]
    assert en["unverified"] == [] and all(t["flags"] == [] for t in en["terms"])


# ---------------------------------------------------------------------------------------------
# `lava-diffmod profile`
# ---------------------------------------------------------------------------------------------

def test_cli_profile_fits(capsys):
    assert cli.main(["profile", "--hw", "loihi2", "--config", CUE]) == 0
    out = capsys.readouterr().out
    for text in ("neurons per core", "synapse memory per core (bits)", "fan-in axons per core",
                 "unknown (not enforced)", "fits on 1 chip", "energy per trial", "unverified",
                 "UNVERIFIED"):
        assert text in out, text
    assert re.search(r"neurons per core\s+100\s+8192\s+OK", out)
    rules = out.split("learning rule (Loihi 3-factor syntax)")[1]
    for part in ("input synapses", "recurrent synapses", "readout synapses"):
        assert part in rules, part
    # every literal of the printed rules lies in loihi2's range: mantissa <= 7, exponent in [-7, 8]
    for m, e in re.findall(r"(?:(\d+) \* )?2\^(-?\d+)", rules):
        assert int(m or 1) <= 7 and -7 <= int(e) <= 8
    assert 'dt = "' in rules and 'dw = "' in rules and "u0 * t * y3" in rules


def test_cli_profile_over_limit_returns_3(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text(tomli_w.dumps(tiny()))
    prof = write_profile(tmp_path / "narrow.toml", {"fanin_axons": 5})
    assert cli.main(["profile", "--hw", str(prof), "--config", str(path), "--seed", "2"]) == 3
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "fan-in axons > 5" in out and "EXCEEDED" in out


@pytest.mark.parametrize("hw_arg", ["loihi3", "missing/profile.toml"])
def test_cli_profile_bad_name_returns_2(hw_arg, capsys):
    assert cli.main(["profile", "--hw", hw_arg, "--config", CUE]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("lava-diffmod: error: ") and "not found" in err[0]


def test_cli_profile_bad_key_returns_2(tmp_path, capsys):
    prof = write_profile(tmp_path / "bad.toml", {"weight_bits": 99})
    assert cli.main(["profile", "--hw", str(prof), "--config", CUE]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "keys.weight_bits" in err[0]
