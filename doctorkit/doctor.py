"""`python -m doctorkit.doctor`: one screen about this machine, the first thing to paste into a support request.

Python, torch, CUDA and driver; each GPU (memory, compute capability, bf16); attention kernels; the CPU flags
and the 4-bit path bitsandbytes takes on this CPU; free disk where runs and the Hugging Face cache go; offline
settings; and which shipped recipes fit each GPU by the cost estimator's peak memory, with the largest batch.
Everything is read locally (no network), in a few seconds.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError, cli_main

GiB = 1024 ** 3
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")   # the ones that change which kernels run
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "HF_HUB_CACHE",
                     "HF_ENDPOINT")
# The recipes beside the package (a source checkout, an editable install); an installed wheel has none beside
# it, so the folder the command runs in (an unpacked bundle) is looked at next; --recipes names any other.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def default_recipes_dir() -> Path:
    return RECIPES_DIR if RECIPES_DIR.is_dir() else Path("recipes")


# ------------------------------------------------------------------ what we look at ---

def gpu_devices() -> list[dict]:
    """Each CUDA device torch sees: name, total memory, compute capability, bf16 support (Ampere and newer)."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({"index": index, "name": props.name, "memory_bytes": int(props.total_memory),
                        "compute_capability": f"{props.major}.{props.minor}", "bf16": props.major >= 8})
    return devices


def driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi (torch reports only the CUDA version it was built with)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    try:
        words = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        return {flag: None for flag in CPU_FLAGS}   # not Linux: unknown, not absent
    return {flag: flag in words for flag in CPU_FLAGS}


def attention_kernels() -> dict:
    """SDPA (in torch) and flash-attention (a separate package that needs a CUDA GPU); found without importing
    transformers, which alone would take seconds."""
    try:
        flash_version = importlib.metadata.version("flash-attn")
    except importlib.metadata.PackageNotFoundError:
        flash_version = None
    return {"sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention"),
            "flash_attn": flash_version, "flash_attention_2_usable": bool(flash_version and torch.cuda.is_available())}


def bitsandbytes_state(flags: dict) -> dict:
    """Version, native libraries and the 4-bit CPU path, read without importing bitsandbytes.

    Importing it loads torch._dynamo (seconds) and, on AVX512-BF16 CPUs, logs a warning; the doctor must stay
    fast and quiet. bitsandbytes' own rule (doctorkit.methods.quantized.cpu_4bit_path) is the CPU's AVX512-BF16
    support, which /proc/cpuinfo reports as avx512_bf16.
    """
    from doctorkit.methods.quantized import CPU_PATH_DEQUANTIZE, CPU_PATH_PACKED

    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return {"version": None, "backend": None, "native": [], "cpu_4bit_path": None,
                "problem": "bitsandbytes is not installed (4-bit and 8-bit methods need it: pip install bitsandbytes)"}
    spec = importlib.util.find_spec("bitsandbytes")
    folder = Path(next(iter(spec.submodule_search_locations)))
    # the native library bitsandbytes loads: the one for torch's CUDA version on CUDA torch, else the CPU one
    cuda = torch.version.cuda
    backend = f"cuda{cuda.replace('.', '')}" if cuda else "cpu"
    native = [p.name for p in folder.glob(f"libbitsandbytes_{backend}.*")]
    path = None if flags.get("avx512_bf16") is None else (CPU_PATH_PACKED if flags["avx512_bf16"] else CPU_PATH_DEQUANTIZE)
    problem = None if native else (f"bitsandbytes {version} ships no libbitsandbytes_{backend} for this torch "
                                   f"(pip install -U bitsandbytes)")
    return {"version": version, "backend": backend, "native": native, "cpu_4bit_path": path, "problem": problem}


def free_disk(path: Path) -> dict:
    """Free bytes on the file system that will hold `path` (its nearest existing folder)."""
    where = path.resolve()
    while not where.exists():
        where = where.parent
    return {"path": str(path), "free_bytes": shutil.disk_usage(where).free}


def offline_settings() -> dict:
    from huggingface_hub import constants

    settings = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    settings["hub_offline_effective"] = bool(constants.HF_HUB_OFFLINE)
    return settings


def recipe_fits(gpus: list[dict], recipes_dir: Path = RECIPES_DIR) -> list[dict]:
    """Each shipped training recipe: the estimator's peak at its own batch and, per GPU, the largest batch.

    Rows are as long as train.max_seq_len (the worst case the recipe allows), so no data is read here.
    """
    from doctorkit.cost.catalog import GPUS
    from doctorkit.cost.estimate import largest_batch_that_fits
    from doctorkit.cost.job import job_from_recipe
    from doctorkit.cost.memory import peak_bytes
    from doctorkit.cost.shapes import resolve_shape
    from doctorkit.errors import DoctorKitError
    from doctorkit.recipe import load_recipe

    from doctorkit.packing import resolve as packing_layout

    rows = []
    for path in sorted(recipes_dir.glob("*.yaml")):
        try:
            recipe = load_recipe(path)
            # attn_implementation auto: transformers picks sdpa; packed runs then get the layout packing.resolve gives
            attention = "sdpa" if recipe.attn_implementation == "auto" else recipe.attn_implementation
            packing = ("/".join(packing_layout(recipe.data.packing_layout, attention, bool(gpus)))
                       if recipe.data.packing else None)
            if recipe.model.startswith("builtin:"):   # the embedded test model runs anywhere, CPU included
                rows.append({"recipe": path.name, "model": recipe.model, "method": recipe.method,
                             "attention": attention, "packing": packing,
                             "peak_memory_bytes": None, "gpus": [], "cheapest_catalog_gpu": None})
                continue
            job = job_from_recipe(recipe, resolve_shape(recipe.model)[0], recipe.train.max_seq_len)
        except DoctorKitError:
            continue   # not a training recipe (translate.yaml) or a model the estimator does not know
        row = {"recipe": path.name, "model": recipe.model, "method": recipe.method, "attention": attention,
               "packing": packing, "batch_size": job.batch,
               "seq_len": job.seq, "peak_memory_bytes": int(peak_bytes(job)),
               "gpus": [{"index": g["index"], "largest_batch": largest_batch_that_fits(job, g["memory_bytes"])}
                        for g in gpus]}
        fitting = [g for g in GPUS if largest_batch_that_fits(job, g.memory_bytes) >= job.batch]
        row["cheapest_catalog_gpu"] = min(fitting, key=lambda g: g.usd_per_hour).label if fitting else None
        rows.append(row)
    return rows


def collect(run_folder: Path = Path("runs"), recipes_dir: Path | None = None) -> dict:
    from huggingface_hub import constants

    gpus = gpu_devices()
    flags = cpu_flags()
    return {
        "python": platform.python_version(), "platform": platform.platform(), "executable": sys.executable,
        "torch": torch.__version__, "cuda_build": torch.version.cuda, "driver": driver_version() if gpus else None,
        "gpus": gpus, "cpu": {"flags": flags, "torch_capability": torch.backends.cpu.get_cpu_capability(),
                              "threads": torch.get_num_threads()},
        "attention": attention_kernels(), "bitsandbytes": bitsandbytes_state(flags),
        "disk": {"runs": free_disk(run_folder), "hf_cache": free_disk(Path(constants.HF_HUB_CACHE))},
        "offline": offline_settings(), "recipes": recipe_fits(gpus, recipes_dir or default_recipes_dir()),
    }


# ------------------------------------------------------------------ the screen ---

def _yes(value) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _cpu_path_line(bnb: dict) -> str:
    from doctorkit.methods.quantized import CPU_PATH_PACKED

    if bnb["problem"]:
        return f"  4-bit        unavailable: {bnb['problem']}"
    if bnb["cpu_4bit_path"] is None:
        return "  4-bit on CPU unknown (no /proc/cpuinfo to read avx512_bf16 from)"
    if bnb["cpu_4bit_path"] == CPU_PATH_PACKED:
        return ("  4-bit on CPU avx512_bf16: bitsandbytes repacks layers for a bf16 kernel when not training; "
                "DoctorKit keeps 4-bit layers off it")
    return "  4-bit on CPU no avx512_bf16: bitsandbytes dequantizes and multiplies in the compute dtype"


def _recipe_cells(row: dict, gpus: list[dict]) -> str:
    if row["peak_memory_bytes"] is None:
        return "any machine, CPU included (embedded tiny model)"
    if gpus:
        return "  ".join((f"batch {c['largest_batch']}" if c["largest_batch"] else "no fit").ljust(9)
                         for c in row["gpus"])
    return row["cheapest_catalog_gpu"] or "none in the catalog: shard it (FSDP / ZeRO-3)"


def render(r: dict) -> str:
    bnb, cpu, att, off = r["bitsandbytes"], r["cpu"], r["attention"], r["offline"]
    lines = [
        "DoctorKit doctor",
        f"  python       {r['python']} ({r['executable']})  on {r['platform']}",
        f"  torch        {r['torch']}  CUDA build {r['cuda_build'] or 'none (CPU-only torch)'}"
        + (f"  driver {r['driver']}" if r["driver"] else ""),
    ]
    for g in r["gpus"]:
        lines.append(f"  GPU {g['index']:<8} {g['name']}  {g['memory_bytes'] / GiB:.1f} GiB  compute "
                     f"{g['compute_capability']}  bf16 {_yes(g['bf16'])}" + ("" if g["bf16"] else " (use dtype: fp16)"))
    if not r["gpus"]:
        lines += ["  GPU          none: torch sees no CUDA device. Training runs on the CPU: fine for builtin:tiny and",
                  "               checks, far too slow for real models; the table shows the GPU each recipe needs."]
    flags = " ".join(f"{name} {_yes(v)}" for name, v in cpu["flags"].items())
    lines.append(f"  CPU          {flags}  (torch kernels {cpu['torch_capability']}, {cpu['threads']} threads)")
    lines.append(f"  attention    SDPA {_yes(att['sdpa'])}  flash-attn "
                 + (f"{att['flash_attn']} (usable: {_yes(att['flash_attention_2_usable'])})" if att["flash_attn"]
                    else "not installed (attn_implementation: auto uses SDPA)"))
    lines.append(f"  bitsandbytes {bnb['version'] or '-'}  backend {bnb['backend'] or '-'}"
                 + (f" ({bnb['native'][0]})" if bnb["native"] else ""))
    lines.append(_cpu_path_line(bnb))
    for name, d in r["disk"].items():
        label = {"runs": "runs folder", "hf_cache": "HF cache"}[name]
        lines.append(f"  disk         {d['free_bytes'] / GiB:.1f} GiB free for the {label} ({d['path']})")
    set_vars = ", ".join(f"{k}={v}" for k, v in off.items() if k != "hub_offline_effective" and v)
    lines.append("  offline      " + ("yes: nothing is downloaded, models must be local folders" if off["hub_offline_effective"]
                                      else "no: hub ids download when reachable (HF_HUB_OFFLINE=1 fails fast instead)")
                 + (f"; {set_vars}" if set_vars else ""))
    head = "  ".join(f"GPU {g['index']}".ljust(9) for g in r["gpus"]) if r["gpus"] else "cheapest catalog GPU that fits"
    lines += ["", f"  {'recipe':<24}{'method':<9}{'model':<27}{'peak GiB':>9}  {head}"]
    for row in r["recipes"]:
        peak = "-" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / GiB:.1f}"
        lines.append(f"  {row['recipe']:<24}{row['method']:<9}{row['model'][:26]:<27}{peak:>9}  {_recipe_cells(row, r['gpus'])}")
    if not r["recipes"]:   # an installed wheel carries no recipes/ folder
        lines.append("  no recipes found here (recipes/ comes with a source checkout or the offline bundle; "
                     "doctorkit doctor --recipes DIR checks another folder)")
    lines.append("  (peak: the cost estimator at the recipe's batch and train.max_seq_len; "
                 + ("batch N: the largest batch that fits that GPU)" if r["gpus"] else "doctorkit cost RECIPE for hours and $)"))
    packed = [f"{row['recipe']} {row['packing']}" for row in r["recipes"] if row.get("packing")]
    if packed:   # which packed layout / attention a run gets here (README "Packing and attention backends")
        lines.append("  packing layout/attention on this machine: " + ", ".join(packed))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doctorkit doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print everything as JSON (sizes in bytes)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where your runs go (default: runs)")
    parser.add_argument("--recipes", type=Path, help="folder of recipes to check (default: the shipped recipes/)")
    args = parser.parse_args(argv)
    if args.recipes is not None and not args.recipes.is_dir():
        raise DoctorKitError(f"--recipes {args.recipes}: no such folder")
    report = collect(args.runs, args.recipes)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv, library_noise=False)   # imports no library that logs


if __name__ == "__main__":
    run()
