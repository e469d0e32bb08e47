"""P-tuning v2 export: the prefix cannot be merged into weights, so the folder gets the prefix, the tokenizer and
a small loader (load_ptuning.py + ptuning_prefix.py) that attaches it to the base model."""
from __future__ import annotations

import shutil
from pathlib import Path

# Written into the export and run there without DoctorKit: it loads the tokenizer with plain AutoTokenizer, not
# doctorkit.model.load_tokenizer (the kit's one loader everywhere else).
PTUNING_LOADER = '''"""Load this P-tuning v2 export (written by doctorkit.export): base model + trained prefix, ready to generate.

    from load_ptuning import load
    model, tokenizer = load()                 # the base model named in prefix/prefix_config.json
    model, tokenizer = load("/path/to/base")  # or a local copy of it (or an already loaded model)

Needs torch, transformers and safetensors; the prefix code is ptuning_prefix.py next to this file.
"""
import json
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from ptuning_prefix import load_prefix_model

HERE = Path(__file__).resolve().parent


def load(base=None, **from_pretrained_kwargs):
    if base is None:
        base = json.loads((HERE / "prefix" / "prefix_config.json").read_text(encoding="utf-8"))["base_model"]
    if isinstance(base, (str, Path)):
        base = AutoModelForCausalLM.from_pretrained(base, **from_pretrained_kwargs)
    model = load_prefix_model(base, HERE / "prefix").eval()
    model.config.use_cache = True  # the prefix lives in the cache during generation
    return model, AutoTokenizer.from_pretrained(HERE)
'''


def export_prefix(recipe, run_dir: Path, out: Path) -> Path:
    from doctorkit import atomic
    from doctorkit.methods.ptuning import prefix
    from doctorkit.rundir import ADAPTER, TOKENIZER

    with atomic.folder(out) as folder:  # a kill or a full disk leaves no half-written --out behind
        shutil.copytree(run_dir / ADAPTER, folder / "prefix")
        for item in (run_dir / TOKENIZER).iterdir():
            shutil.copy2(item, folder / item.name)
        shutil.copy2(prefix.__file__, folder / "ptuning_prefix.py")
        (folder / "load_ptuning.py").write_text(PTUNING_LOADER, encoding="utf-8")
    print(f"P-tuning v2 cannot be merged into the weights (the prefix adds attention positions, not weight "
          f"changes). Wrote the prefix, tokenizer and a loader to {out}: `from load_ptuning import load` "
          f"attaches it to the base model {recipe.model}.")
    return out
