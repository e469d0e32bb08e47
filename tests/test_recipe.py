"""Recipe validation: every mistake is one line naming the file and the key, with a hint."""
from pathlib import Path

import pytest

from doctorkit.errors import DoctorKitError
from doctorkit.recipe import Recipe, load_recipe, save_recipe


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, "model: builtin:tiny\ntrain:\n  max_steps: 5\n")
    recipe = load_recipe(path, ["train.max_steps=7", "lora.r=4", "data.packing=true", "lora.target_modules=[q_proj,v_proj]"])
    assert recipe.train.max_steps == 7 and recipe.lora.r == 4 and recipe.data.packing is True
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]
    assert recipe.train.max_seq_len == Recipe().train.max_seq_len


def test_unknown_key_names_file_key_and_nearest(tmp_path):
    path = write(tmp_path, "train:\n  max_step: 5\n")
    with pytest.raises(DoctorKitError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and "train.max_step" in msg and "train.max_steps" in msg
    assert "\n" not in msg


def test_unknown_top_level_key_from_set(tmp_path):
    path = write(tmp_path, "model: builtin:tiny\n")
    with pytest.raises(DoctorKitError, match=r"unknown key 'modle'.*'model'"):
        load_recipe(path, ["modle=x"])


def test_wrong_type_names_expected_type(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: lots\n")
    with pytest.raises(DoctorKitError, match=r"train.max_steps' expects int, got 'lots'"):
        load_recipe(path)


def test_bad_choice_and_bad_yaml_and_missing(tmp_path):
    with pytest.raises(DoctorKitError, match="method"):
        load_recipe(write(tmp_path, "method: lorax\n"))
    with pytest.raises(DoctorKitError, match=r"b.yaml:2: not valid YAML"):
        load_recipe(write(tmp_path, "a: 1\n b: [\n", "b.yaml"))
    with pytest.raises(DoctorKitError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_saved_recipe_reloads_equal(tmp_path):
    recipe = load_recipe(write(tmp_path, "method: lora\nlora:\n  r: 8\n"), ["data.system_prompt=你是医生"])
    save_recipe(recipe, tmp_path / "saved.yaml")
    assert load_recipe(tmp_path / "saved.yaml") == recipe


@pytest.mark.parametrize("method, section, message", [
    ("lora", "ptuning:\n  pre_seq_len: 4\n", "section 'ptuning' belongs to method ptuning, but method is lora, "
                                              "which reads lora; remove 'ptuning'"),
    ("lora", "quantization:\n  bits: 8\n", "section 'quantization' belongs to method qlora \\(also read by dpo, "
                                           "ptuning\\), but method is lora, which reads lora;.*set method=qlora"),
    ("ptuning", "lora:\n  r: 4\n", "section 'lora' belongs to method lora .*method is ptuning, which reads "
                                    "ptuning, quantization"),
    ("qlora", "dpo:\n  beta: 0.2\n", "section 'dpo' belongs to method dpo, but method is qlora, which reads "
                                      "lora, quantization"),
    ("ptuning", "dpo:\n  beta: 0.2\n", "section 'dpo'.*method is ptuning"),
])
def test_another_methods_section_is_one_line_naming_what_the_method_reads(tmp_path, method, section, message):
    path = write(tmp_path, f"method: {method}\n{section}")
    with pytest.raises(DoctorKitError, match=message) as err:
        load_recipe(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("method, sections", [
    ("lora", {"lora": {"r": 4}}),
    ("qlora", {"lora": {"r": 4}, "quantization": {"bits": 8}}),
    ("dpo", {"lora": {"r": 4}, "quantization": {"bits": 8}, "dpo": {"base_method": "qlora"}}),
    ("ptuning", {"ptuning": {"pre_seq_len": 4}, "quantization": {"bits": 8}}),
])
def test_the_sections_a_method_reads_are_accepted(tmp_path, method, sections):
    import yaml

    recipe = load_recipe(write(tmp_path, yaml.safe_dump({"method": method, **sections})))
    assert {key: getattr(recipe, key).model_dump(include=set(value)) for key, value in sections.items()} == sections


def test_switching_method_on_the_command_line_drops_the_old_section_with_null(tmp_path):
    path = write(tmp_path, "method: lora\nlora:\n  r: 4\n")
    with pytest.raises(DoctorKitError, match="--set lora=null"):
        load_recipe(path, ["method=ptuning"])
    recipe = load_recipe(path, ["method=ptuning", "lora=null", "ptuning.pre_seq_len=4"])
    assert recipe.method == "ptuning" and recipe.lora.r == Recipe().lora.r   # back to the default, unused
    save_recipe(recipe, tmp_path / "saved.yaml")   # a run's recipe.yaml holds only the sections its method reads
    assert {"lora", "dpo"}.isdisjoint((tmp_path / "saved.yaml").read_text(encoding="utf-8").splitlines())
    assert load_recipe(tmp_path / "saved.yaml") == recipe


def test_a_run_saved_with_every_section_still_loads_as_a_run(tmp_path):
    """Runs written before sections were tied to the method hold all of them at their defaults."""
    import yaml

    old = write(tmp_path, yaml.safe_dump(Recipe(method="ptuning").model_dump(mode="json")))
    with pytest.raises(DoctorKitError, match="section 'lora'"):
        load_recipe(old)
    assert load_recipe(old, saved=True) == Recipe(method="ptuning")


def test_every_shipped_recipe_validates():
    from pathlib import Path
    for path in sorted(Path(__file__).parent.parent.glob("recipes/*.yaml")):
        if path.name.startswith("translate"):
            continue  # translate has its own schema, tested in tests/test_translate*.py
        load_recipe(path)


def test_every_recipe_key_is_documented():
    """recipes/README.md names every key of the schema, so the docs cannot drift from the code."""
    from pathlib import Path

    from doctorkit.recipe import dump_defaults

    doc = (Path(__file__).parent.parent / "recipes" / "README.md").read_text(encoding="utf-8")

    def keys(tree, prefix=""):
        for name, value in tree.items():
            path = f"{prefix}{name}"
            if isinstance(value, dict) and value:
                yield from keys(value, path + ".")
            else:
                yield path

    missing = [k for k in keys(dump_defaults()) if f"`{k}`" not in doc]
    assert not missing, f"undocumented recipe keys: {missing}"


def test_eval_task_is_any_task_file_and_an_unknown_one_stops_before_training():
    from doctorkit.evaluate import available_tasks, check_eval_config

    quick = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"
    for task in available_tasks():   # every task file, not a fixed list in the schema
        assert load_recipe(quick, [f"eval.task={task}"]).eval.task == task
    recipe = load_recipe(quick, ["eval.task=nosuch", "eval.data=data/eval_dialog_zh.jsonl"])
    with pytest.raises(DoctorKitError, match=r"unknown evaluation task 'nosuch' \(available: .*dialog.*mcq"):
        check_eval_config(recipe)
