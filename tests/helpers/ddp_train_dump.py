"""`python -m doctorkit.train` as torchrun starts it, plus two observations the DDP test compares across ranks.

DOCTORKIT_DDP_DUMP=DIR makes each rank write DIR/rank<R>.safetensors (its trainable weights after training)
and DIR/rank<R>_writes.json (every file or folder it created, opened for writing or deleted under the run
directory, seen through Python audit hooks). Nothing here changes what training does.
"""
import json
import os
import sys
from pathlib import Path

import trl
from safetensors.torch import save_file

DUMP = Path(os.environ["DOCTORKIT_DDP_DUMP"])
RANK = int(os.environ.get("RANK", "0"))
RUN_DIR = os.path.abspath(os.environ["DOCTORKIT_DDP_RUN_DIR"])
WRITES = []


def audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        if any(c in mode for c in "wax+"):
            path = os.fsdecode(args[0])
            if os.path.abspath(path).startswith(RUN_DIR):
                WRITES.append(f"open {path}")
    elif event in ("os.mkdir", "shutil.rmtree", "os.remove", "os.rename") and args:
        path = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
        if path and os.path.abspath(path).startswith(RUN_DIR):
            WRITES.append(f"{event} {path}")


original_train = trl.SFTTrainer.train


def train_and_dump(self, *args, **kwargs):
    result = original_train(self, *args, **kwargs)
    weights = {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}
    save_file(weights, str(DUMP / f"rank{RANK}.safetensors"))
    return result


trl.SFTTrainer.train = train_and_dump
sys.addaudithook(audit)
try:
    from doctorkit.train import main

    main(sys.argv[1:])
finally:
    (DUMP / f"rank{RANK}_writes.json").write_text(json.dumps(WRITES))
