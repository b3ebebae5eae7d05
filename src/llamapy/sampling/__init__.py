"""Token sampling as llama.cpp does it: same defaults, same chain order, same RNG stream for a given seed.

``Sampler(SamplingParams(...), n_vocab, eos_ids, tokenizer).sample(logits)`` picks a token; ``accept(token)``
feeds the penalty and DRY histories. See :mod:`.chain` (the command-line chain), :mod:`.samplers` (each sampler),
:mod:`.dry` (DRY and its sequence breakers) and :mod:`.rng` (``std::mt19937`` and the libstdc++ distributions).
"""
from .chain import DEFAULT_SAMPLERS, Sampler, SamplingParams, build_chain, parse_sampler_names, parse_sampler_seq
from .dry import DEFAULT_SEQUENCE_BREAKERS, Dry
from .rng import DEFAULT_SEED, MT19937
from .samplers import Candidates

__all__ = ["DEFAULT_SAMPLERS", "DEFAULT_SEED", "DEFAULT_SEQUENCE_BREAKERS", "MT19937", "Candidates", "Dry",
           "Sampler", "SamplingParams", "build_chain", "parse_sampler_names", "parse_sampler_seq"]
