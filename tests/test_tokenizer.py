"""One tokenizer loader (doctorkit.model.load_tokenizer) for every command: builtin:tiny, a run directory's saved
tokenizer/, a folder or a hub id; what it cannot load is one line naming the recipe key."""
from pathlib import Path

import pytest

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.errors import DoctorKitError
from doctorkit.model import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_directory_gives_the_tokenizer_it_saved(tmp_path):
    saved = build_tokenizer()
    saved.add_tokens(["<症状标记>"])   # a token the base tokenizer does not have
    saved.save_pretrained(tmp_path / "run" / "tokenizer")
    tokenizer = load_tokenizer(tmp_path / "run")
    assert len(tokenizer) == len(build_tokenizer()) + 1 and "<症状标记>" in tokenizer.get_vocab()


def test_chat_template_is_required_only_for_chat(tmp_path):
    plain = build_tokenizer()
    plain.chat_template = None
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(DoctorKitError, match="no chat template") as err:
        load_tokenizer(tmp_path / "plain")
    assert "\n" not in str(err.value)
    assert load_tokenizer(tmp_path / "plain", chat=False).chat_template is None   # counting tokens needs none


def test_what_cannot_be_loaded_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DoctorKitError, match=r"^student\.model '.*broken': cannot load a tokenizer from this folder"):
        load_tokenizer(tmp_path / "broken", key="student.model")
    with pytest.raises(DoctorKitError, match=r"unknown builtin model 'builtin:huge'"):
        load_tokenizer("builtin:huge")


def test_no_other_module_loads_a_tokenizer_itself():
    """Every command goes through load_tokenizer; the P-tuning export's loader runs without DoctorKit installed."""
    standalone = {Path("doctorkit/model.py"), Path("doctorkit/methods/ptuning/export_folder.py")}
    offenders = [f"{path.relative_to(ROOT)}:{n}" for folder in ("doctorkit", "app", "translate", "bench")
                 for path in sorted((ROOT / folder).rglob("*.py")) if path.relative_to(ROOT) not in standalone
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if "AutoTokenizer.from_pretrained" in line]
    assert offenders == []
