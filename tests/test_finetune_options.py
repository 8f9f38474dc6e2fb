"""Fine-tuning options for large models (issue 13, point 5): QLoRA, the attention kernel,
all-linear LoRA targets, trust_remote_code, 8-bit optimizers and gradient accumulation.

On a CPU host the options that need bitsandbytes, flash-attn or a GPU are checked through their
one-line errors; their real paths are marked ``gpu``. The model is a tiny untrained Llama that
tinylm-pretrain saves with ``save_pretrained``."""

from __future__ import annotations

import io
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded, ever
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from lrbench_builtins.tasks import _corpus  # noqa: E402
from lrbench_builtins.tasks.finetune import CausalLMFinetune  # noqa: E402
from lrbench_builtins.tasks.tinylm import TinyLMPretrain  # noqa: E402
from lrbench_gui.core.params import validate_params  # noqa: E402
from lrbench_gui.core.runs.protocol import parse_line  # noqa: E402
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402
from lrbench_gui.trainer.optim import build_optimizer, check_optimizer  # noqa: E402
from lrbench_gui.trainer.run import Emitter, run_trial  # noqa: E402

LLAMA_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def context(device="cpu", **fields):
    return TaskContext(seed=0, device=torch.device(device), batch_size=8, log=lambda *a: None, **fields)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An untrained tiny Llama (1 layer, width 32) and 80 Alpaca records of corpus version 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("options")
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {
        "context": 32, "val_tokens": 256, "d_model": 32, "n_heads": 2, "n_layers": 1}))
    task.save_model(task.setup(context()), root / "model")
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 80)))
    torch.set_num_threads(threads)
    return root / "model", root / "data.jsonl"


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def make_task(folders, ctx=None, **params):
    model_path, data = folders
    params = {"model_path": str(model_path), "data_path": str(data), "template": "alpaca-short",
              "max_length": 64, "lora_dropout": 0.0, "max_val_samples": 16, **params}
    task = CausalLMFinetune(validate_params(CausalLMFinetune.Params, params))
    return task, task.setup(ctx or context())


def train(task, model, steps, lr=1e-2):
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr)
    batches = task.train_batches()
    losses = []
    for _ in range(steps):
        loss, _ = task.loss(model, next(batches))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_the_options_have_schemas_and_safe_defaults():
    fields = CausalLMFinetune.Params.model_fields
    for name in ("quantization", "quant_compute_dtype", "attn_implementation", "trust_remote_code"):
        assert fields[name].description, name
    p = validate_params(CausalLMFinetune.Params, {})
    assert (p.quantization, p.attn_implementation, p.trust_remote_code) == ("none", "auto", False)
    with pytest.raises(Exception, match="quantization"):
        validate_params(CausalLMFinetune.Params, {"quantization": "2bit"})


@pytest.mark.parametrize("level", ["4bit", "8bit"])
def test_quantization_without_bitsandbytes_or_a_gpu_is_one_line_before_loading(folders, tmp_path, level):
    import importlib.util

    with pytest.raises(ValueError) as info:  # a CPU trial: the GPU is missing here on any machine
        make_task((tmp_path / "not-loaded", folders[1]), quantization=level)  # the model is never read
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"quantization={level} needs")
    assert "a CUDA GPU (this trial runs on cpu)" in message and message.endswith("or set quantization=none")
    assert ("pip install bitsandbytes" in message) == (importlib.util.find_spec("bitsandbytes") is None)
    with pytest.raises(ValueError, match="set lora=true"):
        make_task(folders, quantization=level, lora=False)
    with pytest.raises(ValueError, match="use precision bf16-mixed"):
        make_task(folders, context(precision="bf16-true"), quantization=level)


def test_the_qlora_config_is_nf4_with_double_quantization_in_the_trials_compute_dtype():
    """What from_pretrained gets on a GPU (BitsAndBytesConfig is built without bitsandbytes)."""
    cases = [("bf16-mixed", "float32", "auto", torch.bfloat16), ("fp16-mixed", "float32", "auto", torch.float16),
             ("fp32", "bfloat16", "auto", torch.bfloat16), ("fp32", "float32", "auto", torch.float32),
             ("bf16-mixed", "float32", "float16", torch.float16)]
    for precision, dtype, compute, expected in cases:
        task = CausalLMFinetune(validate_params(CausalLMFinetune.Params, {
            "quantization": "4bit", "dtype": dtype, "quant_compute_dtype": compute}))
        task.precision, task.device = precision, torch.device("cuda:1")
        options = task._from_pretrained_options()
        config = options["quantization_config"]
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
        assert config.bnb_4bit_compute_dtype == expected, (precision, dtype, compute)
        assert options["device_map"] == {"": 1} and options["trust_remote_code"] is False
    task = CausalLMFinetune(validate_params(CausalLMFinetune.Params, {"quantization": "8bit"}))
    task.precision = "fp32"
    assert task._quantization_config().load_in_8bit


def test_flash_attention_2_needs_its_package_and_a_gpu(folders):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        pytest.skip("flash-attn and a GPU are here: the gpu test runs the real path")
    with pytest.raises(ValueError, match=r"attn_implementation=flash_attention_2 needs .*or set "
                                         r"attn_implementation=sdpa$"):
        make_task(folders, attn_implementation="flash_attention_2")


def test_eager_and_sdpa_are_passed_to_from_pretrained_and_agree(folders):
    logits = {}
    for kernel in ("eager", "sdpa"):
        task, model = make_task(folders, attn_implementation=kernel, lora=False)
        assert model.config._attn_implementation == kernel
        batch = task.collate(task.val[:4])
        model.eval()
        with torch.no_grad():
            logits[kernel] = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(logits["eager"], logits["sdpa"], atol=1e-5)


def test_all_linear_adapts_every_linear_layer_but_the_head_and_trains(folders):
    task, model = make_task(folders, lora_target_modules="all-linear", lora_r=4)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters()
               if p.requires_grad and ".lora_A" in n}
    assert adapted == LLAMA_LINEAR
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    width, inner = 32, model.config.intermediate_size
    shapes = 4 * (width + width) + 3 * (width + inner)  # q k v o: 32 -> 32 (2 heads, no GQA); MLP 32 <-> inner
    assert task.model_info()["trainable_params"] == 4 * shapes
    before = task.evaluate(model)["val_loss"]
    train(task, model, 12, lr=3e-2)
    assert task.evaluate(model)["val_loss"] < before - 0.1  # 4.62 -> 4.41 here
    assert {n.split(".lora_B")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters()
            if ".lora_B" in n and p.abs().sum() > 0} == LLAMA_LINEAR  # B starts at zero: every adapter trained
    with pytest.raises(ValueError, match="all-linear stands alone"):
        make_task(folders, lora_target_modules="all-linear,q_proj")


def test_trust_remote_code_is_an_explicit_opt_in(folders, tmp_path, monkeypatch):
    import shutil

    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not the user's cache
    custom = tmp_path / "custom"
    shutil.copytree(folders[0], custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="lrbench-custom", auto_map={
        "AutoConfig": "configuration_custom.CustomConfig", "AutoModelForCausalLM": "modeling_custom.CustomLM"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n    model_type = 'lrbench-custom'\n")
    (custom / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomLM(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    with pytest.raises(ValueError, match=r"ships its own model code .*set trust_remote_code=true") as info:
        make_task((custom, folders[1]))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "modules").exists()  # nothing of the folder's code was copied or run
    _, model = make_task((custom, folders[1]), trust_remote_code=True)
    assert type(model.base_model.model).__name__ == "CustomLM"


def _run(**fields):
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    cfg = validate_trial(load_trial({"task": "digits-mlp", "policy": {"name": "cosine", "params": {
        "lr": 0.05, "warmup_steps": 2}}, "budget": {"steps": 6}, "batch_size": 8, **fields}), reg)
    stream = io.StringIO()
    status = run_trial(cfg, Emitter(cfg.trial_id, stream=stream), reg)
    return status, [parse_line(line) for line in stream.getvalue().splitlines()]


def test_torch_optimizers_come_from_the_factory_and_8bit_ones_fail_before_the_model():
    from lrbench_gui.core.runs.trial import Optimizer

    weight = torch.nn.Parameter(torch.zeros(3))
    adamw = build_optimizer(Optimizer(name="adamw", betas=(0.8, 0.9), weight_decay=0.1), [weight], 0.5)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["betas"] == (0.8, 0.9)
    sgd = build_optimizer(Optimizer(name="sgd", nesterov=True), [weight], 0.5)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["nesterov"]
    check_optimizer(Optimizer(name="sgd"), torch.device("cpu"))
    for name in ("adamw_8bit", "paged_adamw_8bit"):
        with pytest.raises(TrialError, match=rf"optimizer {name} needs .*a CUDA GPU \(this trial runs on cpu\)"):
            _run(optimizer={"name": name}, device="cpu")  # raised before hello: nothing was built


def test_gradient_accumulation_keeps_the_lr_per_optimizer_step_and_doubles_the_samples():
    _, one = _run(grad_accum=1)
    _, two = _run(grad_accum=2)
    steps = [[(e["step"], e["lr"]) for e in events if e.type == "step"] for events in (one, two)]
    assert steps[0] == steps[1] and len(steps[0]) == 6
    samples = [[e["samples"] for e in events if e.type == "step"] for events in (one, two)]
    assert samples[0] == [8 * (i + 1) for i in range(6)] and samples[1] == [2 * s for s in samples[0]]
    # an epoch budget counts samples: two micro-batches per step give half the steps
    hellos = [next(e for e in _run(grad_accum=k, budget={"epochs": 1})[1] if e.type == "hello") for k in (1, 2)]
    assert [h["steps"] for h in hellos] == [180, 90]  # ceil(1438 training images / 8), / 16


def test_a_studys_grad_accum_reaches_its_trials(registry):
    from lrbench_gui.core.tuning.study import Study, StudyConfig

    study = Study(StudyConfig(task="digits-mlp", policies=["cosine"], tuner="random", trials=1, budget_steps=5,
                              grad_accum=4), registry=registry)
    (trial,) = study.next_trials(1)
    assert trial.grad_accum == 4 and trial.budget.steps == 5


@pytest.mark.gpu
def test_qlora_with_paged_adamw_trains_a_4bit_base_on_the_gpu(folders):
    bnb = pytest.importorskip("bitsandbytes")  # the real path: bitsandbytes and a GPU

    task, model = make_task(folders, context("cuda", precision="bf16-mixed"), quantization="4bit",
                            lora_target_modules="all-linear", gradient_checkpointing=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 7 and layers[0].weight.quant_type == "nf4"
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    status, events = _run_finetune(folders, quantization="4bit")
    assert status == "completed"
    losses = [e["loss"] for e in events if e.type == "step"]
    assert losses[-1] < losses[0]


def _run_finetune(folders, **params):
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    cfg = validate_trial(load_trial({
        "task": "causal-lm-finetune", "task_params": {"model_path": str(folders[0]), "data_path": str(folders[1]),
                                                      "max_length": 64, "template": "alpaca-short", **params},
        "policy": {"name": "cosine", "params": {"lr": 1e-2, "warmup_steps": 2}}, "budget": {"steps": 10},
        "batch_size": 8, "precision": "bf16-mixed", "optimizer": {"name": "paged_adamw_8bit"}, "device": "cuda"}), reg)
    stream = io.StringIO()
    status = run_trial(cfg, Emitter(cfg.trial_id, stream=stream), reg)
    return status, [parse_line(line) for line in stream.getvalue().splitlines()]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_optimizers_train_on_the_gpu(name):
    pytest.importorskip("bitsandbytes")
    _, events = _run(optimizer={"name": name}, device="cuda", budget={"steps": 20})
    losses = [e["loss"] for e in events if e.type == "step"]
    assert len(losses) == 20 and losses[-1] < losses[0]
