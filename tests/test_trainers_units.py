"""trainers building blocks, in process: packed attention, vocabulary growth, data order, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainers_helpers import TINY_CONFIG, ck, render_and_pack
from trainers.data import IGNORE, GroupOrderedSampler, PackedCollator, PackedRows, UnpackedCollator


def tiny_model(attn: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(**json.loads(TINY_CONFIG.read_text()))
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()


def separate_loss_sum(model, samples) -> tuple[float, int]:
    """Sum of token losses and trained-token count, each sample run alone (the reference)."""
    total, count = 0.0, 0
    for s in samples:
        ids = torch.tensor([s["input_ids"]])
        labels = torch.tensor([s["labels"]])
        n = int(labels[:, 1:].ne(IGNORE).sum())
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        total += float(loss) * n
        count += n
    return total, count


def two_packed_rows(packed_dir, sft_samples):
    """Two real `corpuskit pack` rows of different length (the longer first), each holding several
    samples, and the rendered samples inside them, found by origin so that the reference does not
    depend on how pack cut the rows."""
    rows = PackedRows(packed_dir)
    multi = sorted((rows[i] for i in range(len(rows)) if len(rows[i]["seq_lens"]) >= 2),
                   key=lambda r: -len(r["input_ids"]))
    longer = multi[0]
    shorter = next(r for r in multi if len(r["input_ids"]) < len(longer["input_ids"]))
    by_origin = {s["origin"]: s for s in sft_samples}
    samples = [by_origin[o] for r in (longer, shorter) for o in r["origins"]]
    return [longer, shorter], samples


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("flatten", [False, True])
def test_packed_batch_loss_equals_token_weighted_mean_of_separate_losses(packed_dir, sft_samples, attn, flatten):
    model = tiny_model(attn).train()  # training mode: no dropout in this config, and no KV cache may sneak in
    # two packed rows of different length: the shorter one is padded in the non-flattened layout
    rows, samples = two_packed_rows(packed_dir, sft_samples)
    batch = PackedCollator(pad_token_id=2, flatten=flatten)(rows)
    batch.pop("meta")
    with torch.no_grad():
        packed = float(model(**batch).loss)
    total, count = separate_loss_sum(model, samples)
    assert packed == pytest.approx(total / count, abs=1e-5)
    # and a cross-sample mask would change it: one long "sample" gives a different loss
    leaky = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"]))
    with torch.no_grad():
        assert abs(float(model(**leaky).loss) - packed) > 1e-3


def test_unpacked_collator_gives_the_same_loss_as_packing(packed_dir, sft_samples):
    model = tiny_model("sdpa")
    rows, samples = two_packed_rows(packed_dir, sft_samples)
    batch = UnpackedCollator(pad_token_id=2)(rows)
    batch.pop("meta")
    assert batch["input_ids"].shape[0] == len(samples)
    total, count = separate_loss_sum(model, samples)
    with torch.no_grad():
        assert float(model(**batch).loss) == pytest.approx(total / count, abs=1e-5)


@pytest.fixture(scope="module")
def pretrain_packed_dir(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """People's Daily through convert -> render --mode pretrain --group-texts 64 -> pack: text blocks
    that start mid-text, so the first token of each sample has a real (trained) label."""
    root = tmp_path_factory.mktemp("pretrain-packed")
    ck("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "--category", "news",
       "-o", root / "news.jsonl")
    return render_and_pack(root / "news.jsonl", llama2_tokenizer_dir, root, mode="pretrain",
                           max_length=64, extra=("--group-texts", 64))


def test_collator_masks_each_sample_start_and_pads_with_own_positions(pretrain_packed_dir):
    rows = PackedRows(pretrain_packed_dir)
    rows = sorted((rows[i] for i in range(len(rows)) if len(rows[i]["seq_lens"]) >= 2),
                  key=lambda r: -len(r["input_ids"]))
    rows = [rows[0], next(r for r in rows if len(r["input_ids"]) < len(rows[0]["input_ids"]))]
    n0 = rows[0]["seq_lens"][0]
    assert rows[0]["labels"][0] != IGNORE and rows[0]["labels"][n0] != IGNORE  # grouped text blocks: trained
    batch = PackedCollator(pad_token_id=0)(rows)
    # the first token of each sample would be the target of the previous sample's last token
    assert batch["labels"][0, 0] == IGNORE and batch["labels"][0, n0] == IGNORE
    assert batch["labels"][0, 1] == rows[0]["labels"][1] and batch["labels"][0, n0 + 1] == rows[0]["labels"][n0 + 1]
    short = len(rows[1]["input_ids"])
    pad = batch["input_ids"].shape[1] - short
    assert pad > 0 and batch["position_ids"][1, short:].tolist() == list(range(pad))
    assert (batch["labels"][1, short:] == IGNORE).all()
    assert batch["meta"]["tokens"] == len(rows[0]["input_ids"]) + short
    assert batch["meta"]["categories"] == ["news"] * (len(rows[0]["seq_lens"]) + len(rows[1]["seq_lens"]))


def test_sampler_keeps_bucket_order_and_shuffles_within_buckets_by_seed():
    groups = [(0, 5), (5, 12), (12, 13)]
    order = GroupOrderedSampler(groups, seed=1).order()
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:12]) == list(range(5, 12)) and order[12] == 12
    assert order == GroupOrderedSampler(groups, seed=1).order()
    assert order != GroupOrderedSampler(groups, seed=2).order()
    one = GroupOrderedSampler([(0, 50)], seed=1)
    assert sorted(one.order()) == list(range(50)) and one.order() != list(range(50))
    first = one.order()
    one.set_epoch(1)
    assert one.order() != first


def test_packed_rows_reads_groups_and_tags_rows(packed_dir):
    rows = PackedRows(packed_dir)
    names = [Path(n).name for n in rows.group_names]
    assert names == ["bucket-00000.jsonl", "bucket-00001.jsonl"]
    manifest = json.loads((packed_dir / "manifest.json").read_text())
    first_of_1 = manifest["groups"][1]["start"]
    assert 0 < first_of_1 < len(rows) == manifest["sequences"]
    assert rows[first_of_1 - 1]["group"] == 0 and rows[first_of_1]["group"] == 1
    last = rows[len(rows) - 1]
    assert last["group"] == 1 and last["row"] == len(rows) - 1
    assert sum(last["seq_lens"]) == len(last["input_ids"])


def cjk_tokenizer(base_dir, out_dir, words):
    from transformers import AddedToken, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.add_tokens([AddedToken(w, normalized=False) for w in words])
    tok.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


def test_vocabulary_growth_initialises_new_rows_from_their_base_pieces(llama2_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    from trainers.model import grow_vocabulary

    base = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    words = ["中国", "人民", "经济发展", "鑫"]  # 鑫 is not a LLaMA-2 piece: it falls back to its UTF-8 bytes
    tok = cjk_tokenizer(llama2_tokenizer_dir, tmp_path / "tok", words)
    assert len(tok) == 32000 + len(words)
    model = tiny_model("sdpa")
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    report = grow_vocabulary(model, tok, len(tok))
    assert report.to_json() == {"old_rows": 32000, "new_rows": 32004, "initialised_from_pieces": 4,
                                "initialised_from_mean": 0}
    vocab = base.get_vocab()
    for i, word in enumerate(words):
        # each character is a LLaMA-2 piece or, if not (济, 鑫), its UTF-8 byte pieces
        pieces = [p for c in word for p in ([vocab[c]] if c in vocab else
                                            [vocab[f"<0x{b:02X}>"] for b in c.encode("utf-8")])]
        for new, old in ((model.get_input_embeddings().weight, old_in), (model.get_output_embeddings().weight, old_out)):
            assert torch.allclose(new[32000 + i], old[pieces].mean(0), atol=1e-6), word
    assert torch.equal(model.get_input_embeddings().weight[:32000], old_in)


def test_fill_auto_fills_every_known_value():
    from trainers.ds_config import RunNumbers, fill_auto, load_ds_config

    numbers = RunNumbers(micro_batch=2, grad_accum=4, lr=3e-4, weight_decay=0.1, max_grad_norm=1.0, bf16=True,
                         fp16=False, warmup_steps=10, total_steps=100, hidden_size=64)
    for name in ("zero2", "zero3", "zero3-offload"):
        cfg = fill_auto(load_ds_config(name), numbers)
        autos = [k for k, v in json.loads(json.dumps(cfg)).items() if v == "auto"]
        assert autos == ["train_batch_size"], (name, autos)  # world size is only known at launch
        assert cfg["train_micro_batch_size_per_gpu"] == 2 and cfg["gradient_accumulation_steps"] == 4
        assert cfg["bf16"]["enabled"] is True and cfg["fp16"]["enabled"] is False
        assert "auto" not in json.dumps(cfg["zero_optimization"])
    offload = fill_auto(load_ds_config("zero3-offload"), numbers)
    assert offload["optimizer"]["params"]["lr"] == 3e-4
