"""`doctorkit doctor`: the machine report, on this CPU and with a stubbed GPU query for the GPU branch."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from doctorkit import doctor
from doctorkit.cost.estimate import largest_batch_that_fits
from doctorkit.cost.job import job_from_recipe
from doctorkit.cost.memory import peak_bytes
from doctorkit.cost.shapes import resolve_shape
from doctorkit.errors import DoctorKitError
from doctorkit.methods.quantized import CPU_PATH_DEQUANTIZE, CPU_PATH_PACKED
from doctorkit.recipe import load_recipe

GiB = 1024 ** 3
RECIPES = doctor.RECIPES_DIR


def _job(name):
    recipe = load_recipe(RECIPES / name)
    return job_from_recipe(recipe, resolve_shape(recipe.model)[0], recipe.train.max_seq_len)


def test_json_offline_without_gpu_and_without_heavy_imports(tmp_path):
    """The whole report offline, in a fresh process that never imports transformers or bitsandbytes
    (each costs seconds; bitsandbytes also logs on some CPUs), so the doctor stays fast and quiet."""
    code = ("import sys, json; from doctorkit import doctor; doctor.main(['--json', '--runs', sys.argv[1]]); "
            "print(json.dumps(sorted(m for m in ('transformers', 'bitsandbytes', 'peft') if m in sys.modules)))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    *report_lines, imported = out.stdout.strip().splitlines()
    report = json.loads("\n".join(report_lines))
    assert json.loads(imported) == []
    assert report["gpus"] == [] and report["driver"] is None
    assert report["offline"]["HF_HUB_OFFLINE"] == "1" and report["offline"]["hub_offline_effective"] is True
    assert report["disk"]["runs"]["free_bytes"] > 0 and report["disk"]["runs"]["path"].endswith("runs")
    rows = {r["recipe"]: r for r in report["recipes"]}
    assert "translate.yaml" not in rows                      # not a training recipe
    assert rows["quickstart.yaml"]["peak_memory_bytes"] is None  # builtin:tiny runs anywhere
    # the peak is the estimator's, recomputed here from the recipe
    assert rows["qlora.yaml"]["peak_memory_bytes"] == int(peak_bytes(_job("qlora.yaml")))
    assert report["bitsandbytes"]["cpu_4bit_path"] in (CPU_PATH_PACKED, CPU_PATH_DEQUANTIZE)
    flags = report["cpu"]["flags"]
    assert report["bitsandbytes"]["cpu_4bit_path"] == (CPU_PATH_PACKED if flags["avx512_bf16"] else CPU_PATH_DEQUANTIZE)


def test_screen_without_gpu_says_what_that_means(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "gpu_devices", lambda: [])
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert "none: torch sees no CUDA device" in out and "the GPU each recipe needs" in out
    assert "cheapest catalog GPU that fits" in out
    lora_line = next(line for line in out.splitlines() if line.strip().startswith("lora.yaml"))
    peak = peak_bytes(_job("lora.yaml")) / GiB
    assert f"{peak:.1f}" in lora_line and "80GB" in lora_line   # 7B bf16 LoRA at seq 2048 needs an 80 GB card
    assert len(out.splitlines()) <= 30                           # one screen


def test_gpu_branch_with_the_device_query_stubbed(capsys, monkeypatch):
    gpus = [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "memory_bytes": 24 * GiB, "compute_capability": "8.9",
             "bf16": True},
            {"index": 1, "name": "Tesla T4", "memory_bytes": 15 * GiB, "compute_capability": "7.5", "bf16": False}]
    monkeypatch.setattr(doctor, "gpu_devices", lambda: gpus)
    monkeypatch.setattr(doctor, "driver_version", lambda: "550.54.15")
    monkeypatch.setattr(doctor.torch.version, "cuda", "12.1")
    report = doctor.collect()
    assert report["driver"] == "550.54.15" and report["bitsandbytes"]["backend"] == "cuda121"
    for row in report["recipes"]:
        if row["peak_memory_bytes"] is None:
            continue
        job = _job(row["recipe"])
        for gpu, cell in zip(gpus, row["gpus"]):
            batch = cell["largest_batch"]
            assert batch == largest_batch_that_fits(job, gpu["memory_bytes"])
            # the edge of fitting: batch fits, batch + 1 does not (0: not even batch 1)
            assert batch == 0 or peak_bytes(dataclasses.replace(job, batch=batch)) <= gpu["memory_bytes"]
            assert peak_bytes(dataclasses.replace(job, batch=batch + 1)) > gpu["memory_bytes"]
    rows = {r["recipe"]: r for r in report["recipes"]}
    assert rows["qlora.yaml"]["gpus"][0]["largest_batch"] >= 1 and rows["lora.yaml"]["gpus"][0]["largest_batch"] == 0
    out = doctor.render(report)
    assert "GPU 0        NVIDIA GeForce RTX 4090  24.0 GiB  compute 8.9  bf16 yes" in out
    assert "Tesla T4" in out and "bf16 no (use dtype: fp16)" in out and "driver 550.54.15" in out
    assert "none: torch sees no CUDA device" not in out
    lora_line = next(line for line in out.splitlines() if line.strip().startswith("lora.yaml"))
    assert "no fit" in lora_line


@pytest.mark.parametrize("flags, path, words", [
    ("fpu avx2 avx512f avx512_bf16 amx_bf16", CPU_PATH_PACKED, "keeps 4-bit layers off it"),
    ("fpu avx2", CPU_PATH_DEQUANTIZE, "dequantizes"),
])
def test_cpu_flags_decide_the_4bit_path(tmp_path, flags, path, words):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    found = doctor.cpu_flags(cpuinfo)
    assert found["avx512_bf16"] == ("avx512_bf16" in flags) and found["amx_bf16"] == ("amx_bf16" in flags)
    state = doctor.bitsandbytes_state(found)
    assert state["cpu_4bit_path"] == path and words in doctor._cpu_path_line(state)
    assert doctor.cpu_flags(tmp_path / "missing")["avx512_bf16"] is None   # unknown, not "no"


def test_this_cpu_agrees_with_bitsandbytes_own_check():
    """The doctor reads avx512_bf16 from /proc/cpuinfo; bitsandbytes asks its native library. Same answer."""
    from doctorkit.methods.quantized import cpu_4bit_path

    flags = doctor.cpu_flags()
    if flags["avx512_bf16"] is None:
        pytest.skip("no /proc/cpuinfo on this system")
    assert doctor.bitsandbytes_state(flags)["cpu_4bit_path"] == cpu_4bit_path()


def test_console_script_runs_doctor(capsys, monkeypatch):
    from doctorkit.cli import main

    monkeypatch.setattr(doctor, "gpu_devices", lambda: [])
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--json"])
    assert done.value.code == 0 and json.loads(capsys.readouterr().out)["gpus"] == []


def test_recipes_folder_can_be_named_as_an_installed_bundle_does(tmp_path, monkeypatch, capsys):
    """A wheel install has no recipes/ beside the package: install.sh passes the bundle's folder."""
    import shutil

    monkeypatch.setattr(doctor, "gpu_devices", lambda: [])
    monkeypatch.setattr(doctor, "RECIPES_DIR", tmp_path / "not-there")
    (tmp_path / "mine").mkdir()
    shutil.copy(RECIPES / "qlora.yaml", tmp_path / "mine" / "qlora.yaml")
    monkeypatch.chdir(tmp_path)
    assert doctor.main(["--json", "--recipes", str(tmp_path / "mine")]) == 0
    assert [r["recipe"] for r in json.loads(capsys.readouterr().out)["recipes"]] == ["qlora.yaml"]
    shutil.copytree(tmp_path / "mine", tmp_path / "recipes")   # no --recipes: ./recipes of the bundle folder
    assert doctor.main(["--json"]) == 0
    assert [r["recipe"] for r in json.loads(capsys.readouterr().out)["recipes"]] == ["qlora.yaml"]
    with pytest.raises(DoctorKitError, match="--recipes .*nope: no such folder"):
        doctor.main(["--recipes", str(tmp_path / "nope")])
    monkeypatch.chdir(tmp_path / "mine")   # neither beside the package nor here: the screen says so
    assert doctor.main([]) == 0
    assert "no recipes found here" in capsys.readouterr().out


def test_packed_recipes_say_which_layout_and_attention_they_get(monkeypatch):
    """Issue 20: a packed recipe's layout follows its attention and the device (doctorkit.packing.resolve)."""
    from doctorkit.packing import SDPA_BY_DOCUMENT

    rows = {r["recipe"]: r for r in doctor.recipe_fits([])}
    packed = [r for r in rows.values() if r["packing"]]
    assert packed and all(r["packing"] == f"varlen/{SDPA_BY_DOCUMENT}" for r in packed if r["attention"] == "sdpa")
    gpu = [{"index": 0, "memory_bytes": 80 * GiB}]
    rows = {r["recipe"]: r for r in doctor.recipe_fits(gpu)}
    assert all(r["packing"] == "rows/sdpa" for r in rows.values() if r["packing"] and r["attention"] == "sdpa")
