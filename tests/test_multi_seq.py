"""Several sequences in one forward batch (Model(n_seq=...).eval_seqs, what llamapy-server's slots need):
each sequence has a cache of its own, and a token's logits are those of its sequence evaluated alone in a
batch, bit for bit (the matmuls compute every row in one order whatever the batch holds; attention reads
only the token's own sequence)."""
import numpy as np
import pytest

from llamapy.model import Model
from llamapy.models import model_path

PROMPTS = {
    "smollm2": [[504, 3575, 282, 4649, 314], [1, 2, 3, 4, 5, 6, 7], [9906, 11, 1530, 18]],
    "gemma3": [[2, 818, 5279, 529, 7001, 563], [2, 3, 4, 5, 6, 7, 8], [2, 9259, 236764]],
}
NEXT = [42, 17, 99]


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def models(request):
    path = model_path(request.param, fetch=False)
    return request.param, Model(path, n_ctx=64, n_threads=2, n_seq=3), Model(path, n_ctx=64, n_threads=2)


def alone(single, prompt, nxt):
    """Logits of nxt after prompt, the whole sequence in one batch."""
    return single.eval(list(prompt) + [nxt], 0)[0]


def test_decode_step_of_three_sequences_is_each_alone(models):
    name, multi, single = models
    prompts = PROMPTS[name]
    # the three prompts in one batch, then one token of each in one batch
    toks = [t for p in prompts for t in p]
    seqs = [s for s, p in enumerate(prompts) for _ in p]
    pos = [i for p in prompts for i in range(len(p))]
    multi.eval_seqs(toks, seqs, pos)
    step = multi.eval_seqs(NEXT, [0, 1, 2], [len(p) for p in prompts])
    for s, p in enumerate(prompts):
        np.testing.assert_array_equal(step[s], alone(single, p, NEXT[s]))


def test_sequences_do_not_see_each_other(models):
    name, multi, single = models
    prompts = PROMPTS[name]
    for s, p in enumerate(prompts):                          # each prompt alone into its own cache
        multi.eval_seqs(p, [s] * len(p), list(range(len(p))))
    before = multi.eval_seqs([NEXT[0]], [0], [len(prompts[0])])[0]
    other = [7, 8, 9, 10, 11, 12, 13, 14]                    # rewrite sequence 1 entirely
    multi.eval_seqs(other, [1] * len(other), list(range(len(other))))
    after = multi.eval_seqs([NEXT[0]], [0], [len(prompts[0])])[0]
    np.testing.assert_array_equal(before, after)


def test_bad_sequence_arguments_are_refused(models):
    _, multi, _ = models
    with pytest.raises(ValueError, match="sequence ids"):
        multi.eval_seqs([1, 2], [0, 3], [0, 0])
    with pytest.raises(ValueError, match="positions"):
        multi.eval_seqs([1], [0], [64])
    with pytest.raises(ValueError, match="same position"):
        multi.eval_seqs([1, 2], [1, 1], [0, 0])
    with pytest.raises(ValueError, match="one entry per token"):
        multi.eval_seqs([1, 2], [0], [0, 1])
