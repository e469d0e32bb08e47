"""Recipes: YAML files validated against a typed schema, with `--set dotted.key=value` overrides.

Every key of every section is declared here with its default; recipes/README.md documents them.
A typo gets a one-line error naming the file, the key and the nearest valid key; a wrong type names
the expected type. pydantic does the validation; we only turn its errors into sentences.
"""
from __future__ import annotations

import argparse
import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from doctorkit.errors import DoctorKitError


def _steps_or_unset(value: int) -> int:
    if value != -1 and value < 1:
        raise ValueError("must be at least 1, or -1 for unset")
    return value


StepsOrUnset = Annotated[int, AfterValidator(_steps_or_unset)]  # a step count, or -1: "use epochs instead"


def _registered_format(name: str) -> str:
    if name == "auto":   # detect per file; accepted without importing the data package
        return name
    from doctorkit.data.formats import choices

    if name not in choices():
        raise ValueError(f"data format '{name}' is not registered (available: {', '.join(choices())})")
    return name


DataFormat = Annotated[str, AfterValidator(_registered_format)]  # auto, or a format in doctorkit.data.formats


class Section(BaseModel):
    # forbid: an unknown key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class CsvColumns(Section):
    user: Optional[str] = None      # column holding the patient's message; unset: recognized (question, ask, 问题, ...)
    assistant: Optional[str] = None  # column holding the doctor's reply; unset: recognized (answer, response, 回答, ...)
    system: Optional[str] = None    # optional column with a per-row system prompt
    id: Optional[str] = None        # optional column kept as the record id


class MixSource(Section):
    path: str                        # a training file in any format data.path takes
    weight: float = Field(gt=0)      # its share of the mix (weights are normalised)


class DataConfig(Section):
    path: Union[str, list[str]] = "data/sample_zh.jsonl"   # file(s): .jsonl, .json or .csv
    format: DataFormat = "auto"      # auto | messages | sharegpt | alpaca | csv | one registered in data/formats.py
    encoding: str = "auto"           # "auto" detects (UTF-8, GB18030, ...) or name one, e.g. gb18030
    columns: CsvColumns = Field(default_factory=CsvColumns)  # CSV only: which column is which
    system_prompt: Optional[str] = None    # added to conversations that carry no system turn
    val_path: Optional[str] = None   # validation file; overrides val_ratio
    val_ratio: float = Field(0.0, ge=0, lt=1)          # share of the data held out for validation when no val_path
    max_samples: Optional[int] = Field(None, ge=1)  # use only the first N valid samples (quick trials)
    on_error: Literal["skip", "fail"] = "skip"   # malformed line: skip and count, or stop
    overlong: Literal["truncate", "skip"] = "truncate"  # sample longer than train.max_seq_len
    train_on: Literal["all_turns", "last_turn"] = "all_turns"  # which assistant turns carry loss
    packing: bool = False            # pack samples into max_seq_len rows, padding-free (faster)
    packing_layout: Literal["auto", "varlen", "rows"] = "auto"  # packed batch: one sequence + per-document attention, or separate rows with a block mask each (doctorkit/packing.py)
    group_by_length: bool = True     # without packing: batch similar lengths to cut padding
    knowledge: Optional[str] = None  # knowledge-base JSONL: ground prompts as chat and demo do
    knowledge_top_k: int = Field(3, ge=1)        # at most this many knowledge entries per conversation
    knowledge_budget: int = Field(400, ge=1)     # max tokens of injected knowledge (the text is cut to fit)
    knowledge_threshold: float = 6.0  # min retrieval score; below it the prompt stays ungrounded
    mix: Optional[list[MixSource]] = None  # [{path, weight}, ...]: replaces data.path, mixed by ratio (forgetting)
    deid: bool = False               # de-identify every conversation before training (doctorkit.deid)
    deid_style: Literal["tag", "surrogate"] = "tag"  # tag: 【姓名1】 placeholders; surrogate: realistic fakes
    canaries: int = 0                # insert K canary records (+ K controls) to measure memorization
    canary_repeats: int = Field(1, ge=1)  # copies of each inserted canary (more copies: more memorized)
    num_proc: int = Field(0, ge=0)   # tokenizing processes; 0: auto (one per core up to 8, from 5000 conversations)


class TrainConfig(Section):
    max_steps: StepsOrUnset = -1     # -1: run `epochs` epochs instead
    epochs: float = Field(1.0, gt=0)
    max_seq_len: int = Field(1024, ge=2)         # tokens per sample (or per packed row)
    batch_size: int = Field(1, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)             # effective batch = batch_size x grad_accum x GPUs
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = "cosine"     # any transformers scheduler name: linear, cosine, constant, ...
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)  # 0: no clipping
    optimizer: str = "auto"          # auto: the method's (paged_adamw_8bit for qlora, else adamw_torch) | adamw_torch | adamw_8bit | ...
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)           # checkpoint every N steps (resume with --resume)
    save_total_limit: int = Field(2, ge=1)       # keep the newest N checkpoints
    eval_steps: Optional[int] = Field(None, ge=1)  # evaluate every N steps (default: at the end only)
    num_workers: int = Field(0, ge=0)            # dataloader worker processes
    loss: Literal["lean", "full"] = "lean"  # lean: no full [tokens, vocab] fp32 logits (TRL fused head on GPU, chunked CE on CPU)
    upcast_fp32: bool = False        # true: embeddings, lm_head and norms in fp32, as peft's prepare_model_for_kbit_training
    # GPU only; exact. auto: on with gradient checkpointing, when only each layer's input moves (tokens x hidden x 2
    # bytes: a few % of the layer's compute time over PCIe, overlapped by TRL's side stream); true: also without it
    activation_offloading: Literal["auto", True, False] = "auto"

    def offloads_activations(self, checkpointing: bool) -> bool:
        """Whether saved activations wait in CPU RAM (on a GPU), given whether the run checkpoints its layers."""
        return checkpointing if self.activation_offloading == "auto" else bool(self.activation_offloading)


class LoraConfig(Section):
    r: int = Field(16, ge=1)                     # rank: higher fits more, costs memory
    alpha: int = Field(32, ge=1)                 # scaling numerator (alpha / r, or alpha / sqrt(r) with rslora)
    dropout: float = Field(0.0, ge=0, lt=1)      # > 0 keeps a dropped copy of every adapted input (memory)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"
    use_dora: bool = False           # weight-decomposed LoRA: a little better, slower
    use_rslora: bool = False         # rank-stabilized scaling: helps at high rank
    # auto: the compute dtype when it is bf16 (adapters, grads, AdamW states at half the bytes, as torchtune trains
    # them), else fp32 | fp32: PEFT's default | compute: the compute dtype (never fp16: the scaler refuses it)
    adapter_dtype: Literal["auto", "fp32", "compute"] = "auto"

    def in_compute_dtype(self, bf16: bool) -> bool:
        """Whether the adapters are kept in the 16-bit compute dtype, given whether the run computes in bf16."""
        return self.adapter_dtype == "compute" or (self.adapter_dtype == "auto" and bf16)


class QuantizationConfig(Section):  # method: qlora (the frozen base, loaded through bitsandbytes)
    bits: Literal[4, 8] = 4          # 4: NF4/FP4 weights (QLoRA); 8: LLM.int8 weights
    quant_type: Literal["nf4", "fp4"] = "nf4"   # 4-bit data type; NF4 suits normally distributed weights
    double_quant: bool = True        # quantize the quantization constants too (~0.4 bit/param saved)
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # matmul dtype; auto: the recipe's dtype


class PtuningConfig(Section):       # method: ptuning (P-tuning v2: deep key/value prefixes, base frozen)
    pre_seq_len: int = Field(128, ge=1)          # prefix length: trainable key/value positions in every layer
    prefix_projection: bool = False  # reparameterize through an MLP (x30 trainable params on 6B)
    prefix_hidden_size: int = Field(512, ge=1)   # MLP width when prefix_projection is on
    quantization_bits: Optional[Literal[4, 8]] = None  # frozen base in 4 or 8 bit (quantization.* settings)


class DpoConfig(Section):
    beta: float = Field(0.1, gt=0)               # strength of the pull back to the reference model (higher: stay closer)
    loss_type: str = "sigmoid"       # sigmoid | ipo | hinge | robust | ... (TRL DPOConfig.loss_type names)
    from_run: Optional[str] = None   # SFT run directory to continue from (its adapter = reference)
    base_method: Literal["lora", "qlora"] = "lora"  # without from_run: fresh adapter on a 16-bit or 4-bit base
    rounds: int = Field(1, ge=1)                 # repeat DPO, each round starting from (and referenced to) the last one
    round_data: list[str] = Field(default_factory=list)  # optional fresh data per round after the first
    max_prompt_len: int = Field(512, ge=1)       # pairs whose prompt is longer (tokens) are skipped and counted


class EvalConfig(Section):
    data: Optional[str] = None       # evaluate after training on this file
    task: str = "dialog"             # any task in doctorkit/evaluate/tasks/ (checked before training: get_task)
    options: dict[str, Any] = Field(default_factory=dict)  # the task's own options, e.g. {mode: generate} for mcq
    max_samples: Optional[int] = Field(200, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    base: bool = False               # also evaluate the base model and print the difference


class Recipe(Section):
    model: str = "builtin:tiny"      # hub id, local folder, or builtin:tiny (offline test model)
    method: str = "lora"             # a registered method (doctorkit.methods): lora | qlora | ptuning | dpo
    output_dir: str = "runs/run"
    seed: int = Field(42, ge=0)
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"   # auto: bf16 if supported, fp16, fp32 on CPU
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = "auto"
    gradient_checkpointing: Optional[bool] = None  # recompute activations to save memory; unset: the method decides (on for qlora)
    trust_remote_code: bool = False  # only for models that ship their own code (ChatGLM3 and older)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    ptuning: PtuningConfig = Field(default_factory=PtuningConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("method")
    @classmethod
    def _registered(cls, name: str) -> str:
        from doctorkit.methods import METHODS

        if name not in METHODS:
            raise ValueError(f"method '{name}' is not registered (available: {', '.join(sorted(METHODS))})")
        return name

    @model_validator(mode="after")
    def _sections_of_its_method(self):
        """A method's section (lora:, ptuning:, ...) is accepted only when the chosen method reads it (Method.reads)."""
        from doctorkit.methods import get_method, section_readers

        reads, readers_of = get_method(self.method).reads(), section_readers()
        for key in type(self).model_fields:   # in the schema's order: lora before ptuning
            readers = readers_of.get(key)
            if readers and key in self.model_fields_set and key not in reads:
                owner = next((name for name in readers if get_method(name).SECTION == key), readers[0])
                also = f" (also read by {', '.join(r for r in readers if r != owner)})" if len(readers) > 1 else ""
                raise ValueError(f"section '{key}' belongs to method {owner}{also}, but method is {self.method}, "
                                 f"which reads {', '.join(reads) or 'no method section'}; remove '{key}' "
                                 f"(--set {key}=null) or set method={owner}")
        return self


def add_method_section(key: str, config: type[Section]) -> None:
    """Give Recipe a `key:` section of class `config` (doctorkit.methods.register for a method that brings one)."""
    Recipe.model_fields[key] = FieldInfo.from_annotated_attribute(config, Field(default_factory=config))
    Recipe.model_rebuild(force=True)


def remove_method_section(key: str) -> None:
    if Recipe.model_fields.pop(key, None) is not None:
        Recipe.model_rebuild(force=True)


# ---------------------------------------------------------------- loading ---

def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DoctorKitError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DoctorKitError(f"{path}: a recipe is a mapping of keys to values, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b=c` sets raw['a']['b'] to c parsed as YAML (so 10 is an int, true a bool, [x,y] a list).
    `a=null` on a whole section removes it (e.g. lora=null with --set method=ptuning)."""
    for item in overrides or []:
        if "=" not in item:
            raise DoctorKitError(f"--set {item}: expected dotted.key=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text) if text.strip() else ""
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if value is None and isinstance(node.get(parts[-1]), dict):
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return raw


def _section_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The Section class that holds the key at `loc` (for naming valid neighbours)."""
    model = schema
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        sub = _section_in(field.annotation)
        if sub is None:
            return None
        model = sub
    return model


def _section_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_in(arg)
        if found:
            return found
    return None


def _describe(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", text) if not typing.get_args(annotation) else text


def format_validation_error(err: ValidationError, source: str, schema: type[BaseModel]) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if isinstance(p, str))
    dotted = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        section = _section_at(schema, loc)
        valid = sorted(section.model_fields) if section else []
        near = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.4)
        hint = f"did you mean '{'.'.join(loc[:-1] + (near[0],))}'?" if near else f"valid keys: {', '.join(valid)}"
        return f"{source}: unknown key '{dotted}' ({hint})"
    if first["type"] == "value_error" and not loc:  # a whole-recipe rule (Recipe._sections_of_its_method)
        return f"{source}: {first['ctx']['error']}"
    section = _section_at(schema, loc)
    field = section.model_fields.get(loc[-1]) if section and loc else None
    expected = _describe(field.annotation) if field else "?"
    got = first.get("input")
    return f"{source}: key '{dotted}' expects {expected}, got {got!r} ({first['msg']})"


def load_recipe(path: str | Path, overrides: list[str] | None = None, schema: type[BaseModel] = Recipe,
                saved: bool = False):
    """Read, override and validate a recipe. Raises DoctorKitError with a one-line message.
    saved: a run directory's own recipe.yaml; runs saved before sections were tied to the method hold every
    section at its defaults, so the sections its method does not read are dropped rather than refused."""
    raw = read_yaml(path)
    if saved and schema is Recipe:
        unread = unread_sections(raw.get("method", Recipe.model_fields["method"].default))
        raw = {key: value for key, value in raw.items() if key not in unread}
    if not raw and not overrides:  # an empty file would silently run every default (a full training run)
        raise DoctorKitError(f"{path}: the recipe is empty; start from one in recipes/ (see recipes/README.md)")
    raw = apply_overrides(raw, overrides or [])
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        source = str(path) + (" (with --set)" if overrides else "")
        raise DoctorKitError(format_validation_error(err, source, schema)) from None


def unread_sections(method: str) -> set[str]:
    """Method sections (of any registered method) that `method` does not read."""
    from doctorkit.methods import METHODS, get_method, section_readers

    reads = get_method(method).reads() if method in METHODS else ()
    return set(section_readers()) - set(reads)


def save_recipe(recipe: BaseModel, path: str | Path) -> None:
    """Every key at its value, except the sections the recipe's method does not read (they would be refused)."""
    from doctorkit import atomic

    unread = unread_sections(recipe.method) if isinstance(recipe, Recipe) else set()
    data = recipe.model_dump(mode="json", exclude=unread)
    atomic.write_text(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def recipe_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The recipe positional and --set overrides, identical for every recipe-driven command."""
    parser.add_argument("recipe", help="recipe YAML file (see recipes/README.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set train.max_steps=100 (repeatable)")
    return parser


def recipe_from_args(args: argparse.Namespace, schema: type[BaseModel] = Recipe):
    return load_recipe(args.recipe, args.overrides, schema)


def dump_defaults(schema: type[BaseModel] = Recipe) -> dict[str, Any]:
    return schema().model_dump(mode="json")
