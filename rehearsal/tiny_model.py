"""A tiny Qwen2-architecture "hub" model for the CPU dress rehearsal of the paper configs.

What it is, and which real checkpoint property each choice stands in for:

* **Architecture** ``Qwen2ForCausalLM`` (``model_type: qwen2``) with Qwen2.5's structure: GQA
  (4 query heads, 2 KV heads, ``head_dim`` 32 — vLLM's CPU attention kernel needs >= 32), q/k/v
  biases, RMSNorm, SiLU MLP; 3 layers, hidden 128, MLP 384, ``max_position_embeddings`` 512,
  755,328 parameters. **Untied** input and output embeddings like Qwen2.5-7B (the 0.5B-3B models
  tie them; untied makes a weight sync that misses ``lm_head.weight`` visible), and an embedding
  matrix **larger than the tokenizer** (640 rows for 600 tokens, as Qwen2.5-7B has 152,064 rows
  for 151,665 tokens). RoPE theta 1e4 instead of Qwen2.5's 1e6 (``ROPE_THETA``: at 512 positions
  and head_dim 32, 1e6 leaves too little positional signal for the short SFT to learn copying).
* **Tokenizer** byte-level BPE trained here with ``tokenizers`` (600 tokens incl. the specials)
  with Qwen2's exact pipeline: NFC normalizer, Qwen2's pre-tokenizer regex (digits split one by
  one), byte-level alphabet, no BOS; special tokens ``<|endoftext|>`` (eos and pad, as in the
  Qwen2.5 *base* models), ``<|im_start|>``, ``<|im_end|>``; the Qwen2.5(-7B-Instruct) chat template
  inline in ``tokenizer_config.json``; ``tokenizer_class: Qwen2Tokenizer`` as the real checkpoints
  have it, plus ``vocab.json`` / ``merges.txt``. transformers 5 rebuilds a ``Qwen2Tokenizer`` from
  vocab and merges with its own hard-coded pipeline (README "Paper scale") — that is why the pipeline above is
  Qwen2's own: ``AutoTokenizer.from_pretrained(dir)`` then encodes and decodes exactly like the
  trained ``tokenizers`` object (checked at build time; the build fails otherwise).
* **Weights** trained in fp32, saved with ``save_pretrained`` in **bfloat16** (``dtype`` and
  ``torch_dtype: bfloat16`` in config.json, only bf16 tensors in ``model.safetensors``) like the
  real checkpoints, with a Qwen2.5-base-like ``generation_config.json`` (greedy, ``max_new_tokens``
  2048: the pipeline must override every field). The directory is a hub snapshot:
  ``fetch-base-model`` takes it as ``base_model.hub.local_path``.
* **SFT** (fp32, CPU, one thread, 400 steps of 32 sequences: 1.5-2.5 minutes on this 2-core machine
  depending on what else runs): arithmetic problems in the benchmarks' style
  (:mod:`rehearsal.problems`, none of them in the mirrors of the same seed) rendered with BOTH paper prompt
  templates — DAPO's ``Answer:`` instruction and the Qwen-Math ``\\boxed{}`` suffix — so that it
  writes short well-formed answers (``First, $7\\cdot 3=21$. Then $12+21=33$.\\nAnswer: 33`` /
  ``... The final answer is $\\boxed{33}$.``, <= 43 tokens, then EOS) and is right now and then
  (about one sample in ten on the mirrors; ``build_info.json`` has the numbers). Prompts are at most
  72 tokens, so a rehearsal's ``max_new_tokens`` (sampling and training) must stay below 440 and
  ``sampling.max_model_len`` at most 512.

``python -m rehearsal.tiny_model --out DIR --seed 0 [--mirrors DIR]`` (deterministic on CPU for a
given seed and thread count, ``--threads``, default 1: one thread is also the fastest on 2 shared
cores). ``build_tiny_model(out, seed)`` is the function.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from pathlib import Path

import torch

from rehearsal.problems import STYLES, Problem, unique_problems, worked

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|endoftext|>"
ROPE_THETA = 10_000.0  # Qwen2.5 uses 1e6 for long contexts; at 512 positions and head_dim 32 that leaves too little positional signal to learn copying quickly

# The Qwen2.5 chat template (Qwen2.5-7B-Instruct's tokenizer_config.json `chat_template`).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# The two paper prompt templates (configs/paper/*.yaml prompt.template).
ANSWER_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
    "Remember to put your answer on its own line after \"Answer:\"."
)
BOXED_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."

# A little general text so that the BPE vocabulary has the words of the exploration analysis
# (pivotal connectives, reflective phrases) and of the chat template, not only the templates'.
EXTRA_CORPUS = (
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "First, we multiply. Then we add. Next, we subtract. Finally, we check the result.",
    "Because the product comes first, we compute it before the sum. Therefore the answer follows.",
    "Thus the value is an integer, so we write it on its own line. However, we verify it first.",
    "Although the numbers are small, but careful work matters, we recall the order of operations.",
    "Wait, let me check this again. Let me reconsider the last step and re-examine the sum.",
    "These results suggest and demonstrate that the method works; we double-check every step.",
    "The sum of two numbers, the difference of two numbers, and the product of two numbers.",
    "Let x be a real number such that the equation holds. Find the remainder when N is divided by 7.",
    "How many positive integers are there? What is the probability that the point lies inside the circle?",
)


# --------------------------------------------------------------------------- data


def response_for(p: Problem, template: str, rng: random.Random) -> str:
    """A short worked response for ``template`` (``answer`` or ``boxed``), ending the way its grader reads it.

    One response in ten adds a reflective sentence, so the exploration analysis finds some.
    """
    body = worked(p)
    if rng.random() < 0.1:
        body += " Let me check: yes."
    if template == "answer":
        return f"{body}\nAnswer: {p.answer}"
    return f"{body} The final answer is $\\boxed{{{p.answer}}}$."


def sft_problems(seed: int, per_style: int, exclude: set[str] | None = None) -> list[Problem]:
    """``per_style`` problems of each style, none of them in ``exclude`` (the mirrors' problems)."""
    rng = random.Random(10_000 + seed)
    out: list[Problem] = []
    for style in STYLES:
        out += unique_problems(rng, style, per_style, exclude=exclude)
    return out


def sft_texts(problems: list[Problem], seed: int) -> list[tuple[str, str]]:
    """(prompt, response) pairs: every problem with both paper templates."""
    rng = random.Random(20_000 + seed)
    pairs = []
    for p in problems:
        pairs.append((ANSWER_TEMPLATE.format(problem=p.text), response_for(p, "answer", rng)))
        pairs.append((BOXED_TEMPLATE.format(problem=p.text), response_for(p, "boxed", rng)))
    return pairs


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int = 600):
    """A byte-level BPE ``tokenizers.Tokenizer`` with Qwen2's normalizer, pre-tokenizer and decoder."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def wrap_tokenizer(tok, model_max_length: int):
    """The ``transformers`` tokenizer saved beside the model (Qwen2.5-base special tokens, chat template)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=None,
        bos_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        chat_template=QWEN25_CHAT_TEMPLATE,
    )


def roundtrip_mismatches(tok, hf_tokenizer, samples: list[str]) -> list[str]:
    """Samples whose ids or decoded text differ between the ``tokenizers`` object and ``hf_tokenizer``."""
    bad = []
    for s in samples:
        ids = tok.encode(s).ids
        if hf_tokenizer(s).input_ids != ids:
            bad.append(s)
        elif hf_tokenizer.decode(ids, skip_special_tokens=False) != tok.decode(ids, skip_special_tokens=False):
            bad.append(s)
    return bad


ROUNDTRIP_SAMPLES = (
    "What is $12+7\\cdot 3$?",
    "Compute $45-18$.",
    "<|im_start|>user\nWhat is $1+1$?<|im_end|>\n<|im_start|>assistant\n",
    "First, $7\\cdot 3=21$. Then $12+21=33$.\nAnswer: 33<|endoftext|>",
    "  leading spaces, trailing spaces   \n\n\ttabs and unicode: Ω ≤ ≥ √ é — 😀",
    "In triangle $ABC$, $\\angle A=50^\\circ$. Express your answer as a common fraction $\\frac{3}{2}$.",
)


# --------------------------------------------------------------------------- model and SFT


def build_model(vocab_size: int, eos_id: int, max_positions: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=max_positions,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        use_sliding_window=False,
        max_window_layers=3,
        attention_dropout=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    config.architectures = ["Qwen2ForCausalLM"]
    return Qwen2ForCausalLM(config)


def _examples(hf_tokenizer, pairs):
    eos = hf_tokenizer.eos_token_id
    out = []
    for prompt, response in pairs:
        p = hf_tokenizer(prompt).input_ids
        r = hf_tokenizer(response, add_special_tokens=False).input_ids
        out.append((p + r + [eos], len(p)))
    return out


def sft(model, examples, *, steps: int, batch_size: int, lr: float, seed: int, pad_id: int) -> list[dict]:
    """fp32 AdamW with warm-up and cosine decay; loss on the response tokens and EOS only."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    history, order = [], []
    model.train()
    for step in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        for i, (ids, n_prompt) in enumerate(batch):
            t = torch.tensor(ids, dtype=torch.long)
            input_ids[i, : len(ids)] = t
            labels[i, n_prompt : len(ids)] = t[n_prompt:]
        # Right padding and no mask: causal attention is exact for every real token.
        logits = model(input_ids=input_ids).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 4)})
            log.info("sft step %d loss %.4f", step, loss.item())
    model.eval()
    return history


# --------------------------------------------------------------------------- evaluation


def evaluate(model, tokenizer, problems: list[tuple[str, str]], *, template: str, grader: str,
             n: int, temperature: float, max_new_tokens: int = 48, seed: int = 0) -> dict:
    """Accuracy (grader over all samples) and EOS fraction of the HF sampler on (problem, answer) pairs."""
    from pipeline.eval.grading import grade
    from pipeline.sampling.base import SamplingParams
    from pipeline.sampling.hf import HFSampler

    sampler = HFSampler(model, tokenizer, batch_size=512)
    params = SamplingParams(n=n, temperature=temperature, top_p=0.95 if temperature else 1.0,
                            max_new_tokens=max_new_tokens, seed=seed)
    outs = sampler.generate([template.format(problem=p) for p, _ in problems], params)
    correct = stops = total = tokens = 0
    for (_, answer), o in zip(problems, outs):
        for c in o.completions:
            total += 1
            stops += c.finish_reason == "stop"
            tokens += c.num_tokens
            correct += c.finish_reason == "stop" and grade(c.text, answer, grader)
    return {"accuracy": correct / total, "eos_fraction": stops / total, "mean_tokens": tokens / total,
            "samples": total, "example": outs[0].completions[0].text}


# --------------------------------------------------------------------------- the build


def save_tokenizer(hf_tok, out: Path) -> None:
    """The tokenizer files of a Qwen2.5 snapshot: tokenizer.json, vocab.json + merges.txt, and a
    tokenizer_config.json with ``tokenizer_class: Qwen2Tokenizer``, the added special tokens and the
    chat template (in the config, as the hub's Qwen2.5 repositories have it), special_tokens_map.json."""
    hf_tok.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)  # transformers 5 writes it apart; Qwen2.5 keeps it inline
    model = json.loads(hf_tok.backend_tokenizer.to_str())["model"]
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n", encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(
        tokenizer_class="Qwen2Tokenizer", add_prefix_space=False, errors="replace", split_special_tokens=False,
        bos_token=None, unk_token=None, chat_template=QWEN25_CHAT_TEMPLATE,
        added_tokens_decoder={
            str(hf_tok.convert_tokens_to_ids(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                                   "single_word": False, "special": True}
            for t in SPECIAL_TOKENS
        },
    )
    cfg.pop("extra_special_tokens", None)
    cfg["additional_special_tokens"] = SPECIAL_TOKENS[1:]
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special = {"eos_token": EOS, "pad_token": EOS, "additional_special_tokens": SPECIAL_TOKENS[1:]}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def write_hub_metadata(out: Path, eos_id: int) -> None:
    """config.json with the dtype under both spellings (transformers 5 writes ``dtype``, the hub's
    Qwen2.5 checkpoints and older readers ``torch_dtype``), a Qwen2.5-base generation_config.json
    (greedy, 2048 new tokens: the pipeline must override every field) and a model card."""
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["torch_dtype"] = config["dtype"] = "bfloat16"
    config.pop("pad_token_id", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": eos_id, "do_sample": False, "eos_token_id": eos_id, "max_new_tokens": 2048,
                  "transformers_version": config.get("transformers_version", "")}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    (out / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n\n"
        "# Tiny Qwen2 (rehearsal)\n\nA tiny Qwen2-architecture model built by `python -m rehearsal.tiny_model` for "
        "the CPU dress rehearsal of the paper configs: byte-level BPE tokenizer trained locally, the Qwen2.5 chat "
        "template, bf16 weights, briefly SFT'd on arithmetic problems. Not a language model of any use.\n"
    )


def build_tiny_model(out: str | Path, seed: int = 0, *, steps: int = 600, batch_size: int = 32, lr: float = 3e-3,
                     per_style: int = 600, threads: int | None = 1, max_positions: int = 512,
                     evaluate_on: list[tuple[str, str]] | None = None, report: bool = True) -> dict:
    """Train the tokenizer, SFT the model, save the hub-snapshot directory ``out``; returns the build info.

    ``evaluate_on``: (problem, answer) pairs to report greedy/sampled accuracy and the EOS
    fraction on (e.g. the mirrors' problems); default a held-out set of generated problems.
    ``report=False`` skips that evaluation (the build info then has no scores).
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # The SFT data holds none of the mirrors' problems (evaluation sets and DAPO, same seed).
    from rehearsal.mirrors import problem_texts

    problems = sft_problems(seed, per_style, exclude=problem_texts(seed))
    pairs = sft_texts(problems, seed)
    tok = train_tokenizer([p + r for p, r in pairs] + list(EXTRA_CORPUS) + [QWEN25_CHAT_TEMPLATE])
    hf_tok = wrap_tokenizer(tok, max_positions)
    save_tokenizer(hf_tok, out)

    vocab_size = 64 * math.ceil(len(hf_tok) / 64)
    torch.manual_seed(seed)
    model = build_model(vocab_size, hf_tok.eos_token_id, max_positions)
    examples = _examples(hf_tok, pairs)
    t_sft = time.perf_counter()
    history = sft(model, examples, steps=steps, batch_size=batch_size, lr=lr, seed=seed, pad_id=hf_tok.pad_token_id)
    sft_seconds = time.perf_counter() - t_sft

    model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    write_hub_metadata(out, hf_tok.eos_token_id)

    # Checks: the saved tokenizer is the trained one, the weights are bf16.
    loaded = AutoTokenizer.from_pretrained(out)
    samples = list(ROUNDTRIP_SAMPLES) + [p + r for p, r in pairs[:200]]
    bad = roundtrip_mismatches(tok, loaded, samples)
    if bad:
        raise RuntimeError(f"AutoTokenizer({out}) ({type(loaded).__name__}) does not round-trip, e.g. {bad[0]!r}")
    dtypes = {str(t.dtype) for t in load_file(out / "model.safetensors").values()}
    if dtypes != {"torch.bfloat16"}:
        raise RuntimeError(f"{out}/model.safetensors holds {dtypes}, not only bfloat16")

    # What the model can do now (bf16 weights loaded back as fp32, as the pipeline does).
    scores, held_out = {}, []
    if report:
        from pipeline.models import load_model_and_tokenizer

        model32, tok32 = load_model_and_tokenizer(out)
        held_out = evaluate_on or [
            (p.text, str(p.answer)) for p in unique_problems(random.Random(30_000 + seed), "math500", 64)
        ]
        for name, template, grader in (("answer_line", ANSWER_TEMPLATE, "answer_line"),
                                       ("boxed", BOXED_TEMPLATE, "math_verify")):
            scores[name] = {
                "greedy": evaluate(model32, tok32, held_out, template=template, grader=grader, n=1, temperature=0.0),
                "t0.6": evaluate(model32, tok32, held_out, template=template, grader=grader, n=8, temperature=0.6,
                                 seed=seed),
                "t1.0": evaluate(model32, tok32, held_out, template=template, grader=grader, n=8, temperature=1.0,
                                 seed=seed),
            }
    response_tokens = [len(ids) - n for ids, n in examples]
    info = {
        "seed": seed,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": {"tokenizer": len(hf_tok), "embedding_rows": vocab_size},
        "tokenizer_class": type(loaded).__name__,
        "sft": {"examples": len(examples), "steps": steps, "batch_size": batch_size, "lr": lr,
                "seconds": round(sft_seconds, 1), "history": history,
                "response_tokens_max": max(response_tokens), "response_tokens_mean": sum(response_tokens) / len(response_tokens),
                "prompt_tokens_max": max(n for _, n in examples)},
        "scores": scores,
        "evaluated_on": len(held_out),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def mirror_problems(mirrors: str | Path) -> list[tuple[str, str]]:
    """(problem, answer) of every evaluation mirror, loaded through the pipeline's loaders."""
    from pipeline.data.hub import load_benchmark_from_config
    from rehearsal.mirrors import overlay, read_manifest

    pairs = []
    for name in sorted(read_manifest(mirrors)["benchmarks"]):
        if name == "dapo17k":
            continue
        frame = load_benchmark_from_config(name, overlay(mirrors, name))
        pairs += list(zip(frame["problem"], frame["answer"]))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.tiny_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the model directory to write (a hub snapshot layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mirrors", help="report accuracies on these mirrors (rehearsal.mirrors) instead of held-out problems")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    evaluate_on = mirror_problems(args.mirrors) if args.mirrors else None
    info = build_tiny_model(args.out, args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            threads=args.threads, evaluate_on=evaluate_on)
    print(json.dumps({k: v for k, v in info.items() if k != "sft"} | {"sft_seconds": info["sft"]["seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
