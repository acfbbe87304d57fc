"""A character-level tokenizer for the toy world, as a real ``PreTrainedTokenizerFast``.

It is saved with ``save_pretrained`` and loaded back with ``AutoTokenizer.from_pretrained``
exactly like a hub tokenizer. The model config beside it is a Llama config: with a
``qwen2`` config, transformers 5 would silently swap in Qwen2's byte-level tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
# Every character the toy world writes, plus the rest of the printable ASCII letters so
# that a user's own prompts never hit <unk> for ordinary text.
CHARACTERS = list(string.digits + "+-*/()=:,.? \n" + string.ascii_lowercase + string.ascii_uppercase)


def build_tokenizer(model_max_length: int = 256) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # One token per character: split on every character and keep it.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    # Like Llama tokenizers: BOS is prepended when add_special_tokens=True.
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    return tok
