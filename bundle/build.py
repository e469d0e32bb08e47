"""`python bundle/build.py` (or `make bundle`): one folder that installs DoctorKit on a machine with no internet.

Writes dist/doctorkit-bundle-<version>/:
  wheels/              every wheel the kit needs (its own included), pinned to the versions in the venv that
                       runs this script (the one the tests passed with); sdist-only packages are built to wheels
  requirements.lock    `name==version --hash=sha256:...` for each wheel: pip's --require-hashes input
  recipes/ data/       the recipes and our sample data, so the quickstart runs from the bundle
  models/NAME/         only with --model: a model folder copied as is
  install.sh           creates a venv and installs with --no-index --require-hashes; --check only verifies
  MANIFEST.sha256      sha256 of every file above (`sha256sum -c MANIFEST.sha256` checks it without us)
  BUILD-INFO.json      python version, platform, torch wheel, what went in

Third-party wheels are reused from an earlier build when nothing that decides them changed (the pins, the
torch spec, the Python, the kit's own dependency list): a rebuild after a source change takes seconds.
Run it on a machine with registry access, Linux x86_64, with the same Python minor version as the hospital's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_SH = Path(__file__).with_name("install.sh")
COPIED = ["recipes", "data", "configs", "README.md"]   # what the quickstart and the docs need next to the venv
STAMP = "wheels.stamp"   # inside wheels/: the inputs that decided the third-party wheels


def log(text: str) -> None:
    print(f"bundle: {text}", flush=True)


def pip(*args: str, stream: bool = False) -> str:
    """Run the build venv's pip; a failure stops the build with pip's own last lines (the useful part).

    stream=True shows pip's progress (one line per package collected) instead of keeping it quiet."""
    cmd = [sys.executable, "-m", "pip", *args] + ([] if stream else ["-q"])
    if stream:
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"bundle: error: `pip {' '.join(args[:2])} ...` failed (its output is above)")
        return ""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"bundle: error: `pip {' '.join(args[:2])} ...` failed:\n{tail}")
    return done.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_pin(wheel: Path) -> str:
    """`name==version` from a wheel file name (PEP 427: name-version-...; names normalized per PEP 503)."""
    name, version = wheel.name.split("-")[:2]
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def venv_pins(torch_spec: str | None) -> list[str]:
    """The working venv's exact versions, as constraints; the kit itself and (with a torch spec) torch left out."""
    pins = []
    for line in pip("freeze", "--exclude-editable", "--all").splitlines():
        name = re.split(r"[=<>@ ]", line.strip(), maxsplit=1)[0].lower()
        if not line.strip() or line.startswith(("#", "-e")) or name in ("doctorkit", "pip", "setuptools", "wheel"):
            continue
        if torch_spec and name == "torch":
            continue
        pins.append(line.strip())
    return pins


def build_project_wheel(into: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="doctorkit-wheel-") as tmp:
        # a copy of the sources: setuptools writes build/ and *.egg-info next to them
        src = Path(tmp) / "src"
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "dist", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache", "bench", "tests"))
        pip("wheel", "--no-deps", "-w", str(into), str(src))
    return next(into.glob("doctorkit-*.whl"))


def requires_dist(wheel: Path) -> list[str]:
    import zipfile
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return [line for line in archive.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]


def third_party_wheels(wheels: Path, project_wheel: Path, torch_spec: str | None) -> None:
    """pip resolves the kit's dependencies under the venv's pins and writes (or builds) a wheel for each."""
    pins = venv_pins(torch_spec)
    inputs = json.dumps({"pins": pins, "torch": torch_spec, "python": platform.python_version(),
                         "machine": platform.machine(), "requires": requires_dist(project_wheel)}, indent=1)
    stamp = wheels / STAMP
    kept = stamp.is_file() and stamp.read_text().split("\n--\n")
    if kept and len(kept) == 2 and kept[0] == inputs and all((wheels / name).is_file() for name in kept[1].split()):
        log(f"reusing {len(list(wheels.glob('*.whl')))} third-party wheels in {wheels} (same pins)")
        return
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="doctorkit-pins-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        log(f"collecting wheels for {project_wheel.name} under {len(pins)} pins"
            f"{' and ' + torch_spec if torch_spec else ''} (minutes on a first build) ...")
        started = time.time()
        pip("wheel", "-w", str(wheels), "-c", str(constraints), "--progress-bar", "off", str(project_wheel),
            *([torch_spec] if torch_spec else []), stream=True)
        log(f"collected in {time.time() - started:.0f} s")
    for own in wheels.glob("doctorkit-*.whl"):   # the kit's wheel is placed separately, every build
        own.unlink()
    stamp.write_text(inputs + "\n--\n" + " ".join(sorted(w.name for w in wheels.glob("*.whl"))))


def copy_model(model: Path, out: Path) -> Path:
    if not (model / "config.json").is_file():
        raise SystemExit(f"bundle: error: --model {model}: not a model folder (no config.json)")
    target = out / "models" / model.name
    log(f"copying model {model} -> {target} ...")
    shutil.copytree(model, target, ignore=shutil.ignore_patterns(".git", ".cache"))
    return target


def write_manifest(out: Path) -> int:
    """sha256sum format, paths relative to the bundle: `sha256sum -c MANIFEST.sha256` verifies it anywhere."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256" and ".venv" not in p.parts)
    log(f"hashing {len(files)} files ({sum(p.stat().st_size for p in files) / 2**30:.1f} GiB) for MANIFEST.sha256 ...")
    lines = [f"{sha256(p)}  {p.relative_to(out).as_posix()}" for p in files]
    (out / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    return len(lines)


def build(out_root: Path, torch_spec: str | None, model: Path | None) -> Path:
    sys.path.insert(0, str(REPO))
    from doctorkit import __version__

    out = out_root / f"doctorkit-bundle-{__version__}"
    wheels = out / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in out.iterdir() if p.name not in ("wheels", ".venv")]:   # everything but the wheel cache
        shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    with tempfile.TemporaryDirectory(prefix="doctorkit-own-") as tmp:
        own = build_project_wheel(Path(tmp))
        third_party_wheels(wheels, own, torch_spec)
        for old in wheels.glob("doctorkit-*.whl"):
            old.unlink()
        own = Path(shutil.copy2(own, wheels / own.name))
    lock = [f"{wheel_pin(w)} --hash=sha256:{sha256(w)}" for w in sorted(wheels.glob("*.whl"))]
    (out / "requirements.lock").write_text(
        "# pip install --no-index --find-links wheels --require-hashes -r requirements.lock (install.sh does it)\n"
        + "\n".join(lock) + "\n")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, out / name)
    shutil.copy2(INSTALL_SH, out / "install.sh")
    (out / "install.sh").chmod(0o755)
    model_dir = copy_model(model, out) if model else None
    torch_wheel = next((w.name for w in wheels.glob("torch-*.whl")), None)
    info = {"doctorkit": __version__, "python": ".".join(platform.python_version_tuple()[:2]),
            "platform": f"{platform.system()} {platform.machine()}", "torch_wheel": torch_wheel,
            "cuda_wheels": sorted(w.name for w in wheels.glob("nvidia_*.whl")),
            "wheels": len(lock), "model": model_dir.relative_to(out).as_posix() if model_dir else None}
    (out / "BUILD-INFO.json").write_text(json.dumps(info, indent=1) + "\n")
    (out / "PYTHON_VERSION").write_text(info["python"] + "\n")   # read by install.sh without Python tooling
    files = write_manifest(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and ".venv" not in p.parts)
    log(f"{out}: {len(lock)} wheels (torch: {torch_wheel}), {files} files in MANIFEST.sha256, {size / 2**20:,.0f} MiB")
    log(f"next: copy the folder to the hospital server, then `bash {out.name}/install.sh`")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bundle/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "dist"), help="where the bundle folder goes (default dist/)")
    parser.add_argument("--torch", default=None, help="torch requirement instead of the venv's torch, e.g. "
                        "'torch==2.13.0' with PIP_EXTRA_INDEX_URL set to a CUDA index (TORCH_SPEC in make)")
    parser.add_argument("--model", default=None, help="a model folder to include, verified by the manifest")
    args = parser.parse_args(argv)
    model = Path(args.model).resolve() if args.model else None
    build(Path(args.out).resolve(), args.torch or None, model)


if __name__ == "__main__":
    main()
