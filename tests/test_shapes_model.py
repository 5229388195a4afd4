"""The embedded `shapes` model: tokenizer, components, the shipped folder (offline, CPU)."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from sgl.models.shapes import data  # noqa: E402
from sgl.models.shapes.build import ShapesConfig, build_tokenizer, build_unet  # noqa: E402
from sgl.models.shapes.export import WEIGHTS_DIR  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    assert (WEIGHTS_DIR / "model_index.json").exists(), "shipped weights missing: python -m sgl.models.shapes.export"
    p = StableDiffusionPipeline.from_pretrained(str(WEIGHTS_DIR), local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def test_every_word_is_one_token(tokenizer):
    for w in data.VOCABULARY:
        assert len(tokenizer.tokenize(w)) == 1, w
    sc = data.render_scene(7, n_objects=3)
    ids = tokenizer(sc.caption).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    for o, pos in zip(sc.objects, data.word_positions(sc.objects)):
        assert tokenizer.convert_ids_to_tokens(ids[pos["colour"]]) == o.colour + "</w>"
        assert tokenizer.convert_ids_to_tokens(ids[pos["shape"]]) == o.shape + "</w>"


def _one_object_store(attention_on):
    """A fake attention store: one 8x8 layer, one object (a 4x4 square, token 2) whose token's
    attention over the cells is `attention_on(mask)`; and the labels and token positions."""
    labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    labels[0, 2:6, 2:6] = 1
    mask = (labels[0] == 1).float().flatten()
    A = torch.full((1, 64, 4), 1e-6)
    A[0, :, 2] = attention_on(mask)
    tokpos = torch.tensor([[[-1, 2, -1], [-1, -1, -1], [-1, -1, -1]]])
    return {"layer": A}, labels, tokpos, torch.ones(1, dtype=torch.bool)


def test_grounding_spread_term_is_zero_only_for_attention_spread_like_the_mask():
    """Both an even spread over the object and a single peak inside it meet the inside-fraction
    loss; only the spread term tells them apart."""
    from sgl.models.shapes.grounding import grounding_loss

    even = _one_object_store(lambda m: m / m.sum())
    peak = _one_object_store(lambda m: torch.eye(64)[3 * 8 + 3] * 0.5)
    for spread in (0.0, 0.05):
        loss_even, inside_even = grounding_loss(*even, spread=spread)
        loss_peak, inside_peak = grounding_loss(*peak, spread=spread)
        assert inside_even > 0.999 and inside_peak > 0.999
        assert loss_even < 1e-4
        if spread == 0:
            assert loss_peak < 1e-4
        else:  # KL(mask || peak): the 15 cells the peak leaves out each cost log((1/16) / ~0)
            assert loss_peak > spread * np.log(16)


def test_recording_processor_matches_default():
    from sgl.models.shapes.grounding import install

    torch.manual_seed(0)
    unet = build_unet(ShapesConfig()).double().eval()
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    ctx = torch.randn(2, 24, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = unet(x, torch.tensor([10, 700]), ctx).sample
        store = {}
        names = install(unet, store)
        out = unet(x, torch.tensor([10, 700]), ctx).sample
    assert len(names) == 7 and len(store) == 7
    assert (out - ref).abs().max().item() < 1e-5
    for A in store.values():
        assert torch.allclose(A.sum(-1), torch.ones_like(A.sum(-1)), atol=1e-5)


def test_shipped_folder_is_a_standard_sd_folder():
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (WEIGHTS_DIR / sub).is_dir()
    size = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*") if f.is_file())
    assert size <= 25e6
    assert list((WEIGHTS_DIR / "unet").glob("*.safetensors"))


def test_shipped_model_generates_on_cpu(pipe):
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    out = pipe("a red circle and a blue square", num_inference_steps=3, guidance_scale=5.0, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3)
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_shapes_recommends_the_tuned_unit_gradient():
    """The shipped weights carry the guidance tuned on `sgl bench edits` (sgl.json)."""
    from sgl.runtime.execute import model_defaults
    from sgl.runtime.pipelines import SHAPES_DIR

    saved = json.loads((SHAPES_DIR / "sgl.json").read_text())
    info = type("Info", (), {"family": "sd", "origin": "shapes"})()
    assert model_defaults(info) == {"strength": saved["strength"], "gradient": "unit", "cfg": saved["cfg"],
                                    "recurrence": saved.get("recurrence", 1), "warmup": saved.get("warmup", 0.0),
                                    "recurrence_until": saved.get("recurrence_until", 1.0),
                                    "recurrence_above": saved.get("recurrence_above", 0.0),
                                    "recurrence_early": saved.get("recurrence_early", 0.0)}
    assert saved["warmup"] > 0  # session 22: resize ×1.5 47 → 56 of 64
    assert 0 < saved["recurrence_above"] < 1  # session 26: moves in 44 % less time, the same edits


def test_learning_rate_warms_up_then_decays_to_lr_end():
    from types import SimpleNamespace

    from sgl.models.shapes.train import learning_rate

    args = SimpleNamespace(lr=5e-4, warmup=200, decay_start=1000, decay_end=2000, lr_end=2.5e-5)
    assert learning_rate(args, 0) == pytest.approx(5e-4 / 200)
    assert learning_rate(args, 500) == learning_rate(args, 1000) == 5e-4
    assert learning_rate(args, 1500) == pytest.approx((5e-4 + 2.5e-5) / 2)
    assert learning_rate(args, 2000) == learning_rate(args, 5000) == pytest.approx(2.5e-5)
    assert learning_rate(SimpleNamespace(**{**vars(args), "decay_end": 0}), 5000) == 5e-4  # no decay


def test_trainer_runs_both_stages_and_exports_a_loadable_pipeline(tmp_path):
    """A few seconds of the real trainer (tiny data, on the CPU), resumed once, then exported:
    the folder loads offline with diffusers and generates."""
    from diffusers import StableDiffusionPipeline

    from sgl.models.shapes.export import export
    from sgl.models.shapes.train import main

    run = tmp_path / "run"
    common = ["--out", str(run), "--n-scenes", "64", "--vae-minutes", "0.01", "--batch", "4",
              "--vae-batch", "4", "--threads", "1", "--eval-every", "100000", "--device", "cpu"]
    main([*common, "--minutes", "0.01"])
    first = (run / "log.txt").read_text()
    assert "vae done" in first and "stage 2 finished" in first
    main([*common, "--minutes", "0.03", "--resume"])
    assert "resumed stage 2" in (run / "log.txt").read_text()
    out = export(run, tmp_path / "weights")
    pipe = StableDiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, guidance_scale=5).images[0]
    assert image.size == (64, 64)


def test_trainer_fine_tunes_an_exported_folder(tmp_path):
    """--init: stage 1 is skipped (the folder's VAE is kept, bit for bit) and stage 2 starts from
    the folder's UNet; --vague captions go into their own cache."""
    import torch
    from diffusers import UNet2DConditionModel

    from sgl.models.shapes.export import WEIGHTS_DIR, export
    from sgl.models.shapes.train import main

    run = tmp_path / "ft"
    main(["--out", str(run), "--init", str(WEIGHTS_DIR), "--vague", "0.3", "--n-scenes", "16", "--batch", "2",
          "--threads", "1", "--eval-every", "100000", "--device", "cpu", "--minutes", "0.01", "--lr", "0",
          "--ground-spread", "0.05"])
    log = (run / "log.txt").read_text()
    assert "initialised from" in log and "vae step" not in log and "stage 2 finished" in log
    assert (tmp_path / "cache_16_vague0.3.npz").exists()
    out = export(run, tmp_path / "weights", fp16=False)
    info = json.loads((out / "training.json").read_text())
    assert info["fine_tuned_from"] == str(WEIGHTS_DIR) and info["vague"] == 0.3 and "step" in info["base"]
    # the guidance tuned for the weights it started from comes along
    assert (out / "sgl.json").read_text() == (WEIGHTS_DIR / "sgl.json").read_text()
    shipped = UNet2DConditionModel.from_pretrained(WEIGHTS_DIR / "unet", torch_dtype=torch.float32).state_dict()
    tuned = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    # lr 0: the weights it started from (up to the EMA's rounding)
    assert all(torch.allclose(shipped[k], tuned[k], rtol=1e-5, atol=1e-6) for k in shipped)
    vae_a = (WEIGHTS_DIR / "vae/diffusion_pytorch_model.safetensors")
    from safetensors.torch import load_file

    tuned_vae = load_file(out / "vae/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v.float(), tuned_vae[k].float()) for k, v in load_file(vae_a).items())


def test_size_readout_compares_attention_size_with_drawn_area():
    """`measure.size_readout` pairs each drawn object's pixel area with SGL's size of its word;
    on the shipped weights the two agree (the full measurement is in MODEL_CARD.md)."""
    from sgl.models.shapes import measure

    out = measure.size_readout(measure.load(), n=12, steps=20, batch=12, record_steps=(19,))
    assert 8 <= out["n_measured"] <= 12
    low, high = out["pixel_area_range"]
    assert 0 < low < high < 0.5
    assert out["corr_area_soft_size"]["step19"] > 0.5
    assert -1 <= out["corr_area_attention_mass"]["step19"] <= 1


def test_shipped_attention_covers_its_object_not_only_a_peak_inside_it():
    """The spread term of the grounding loss: a word's soft shape covers about half of its
    object's mask on the shipped weights (a fifth before it; MODEL_CARD.md), and its size
    follows the object's area."""
    from sgl.models.shapes import measure

    out = measure.attention_extent(measure.load(), n=8, t_values=(200,), batch=8)
    assert out["n_objects"] == 16
    assert out["t200"]["mask_covered"] > 0.35
    assert out["t200"]["corr_log_soft_size_log_area"] > 0.8


def test_dropping_the_colour_words_moves_an_objects_features_about_as_far_as_a_colour_change():
    """Why the runtime reads a reference's features under the guided prompt (sampler.py): on
    the shipped weights an object's pooled features move more, when its caption loses its
    colour word, than red lies from orange (MODEL_CARD.md, docs/benchmarks.md session 13)."""
    from sgl.models.shapes import measure

    out = measure.feature_caption_shift(measure.load(), n=24, t_values=(500,))
    at = out["t500"]
    assert out["n_objects"] == 48 and at["spread"] > 0
    assert at["shift"] > at["red_orange"] and at["shift_over_spread"] > 0.5


def test_trainer_init_from_a_folder_that_is_not_a_model_is_a_usage_error(tmp_path, capsys):
    from sgl.models.shapes.train import main

    with pytest.raises(SystemExit) as done:
        main(["--out", str(tmp_path / "ft"), "--init", str(tmp_path), "--device", "cpu"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "not an exported shapes model folder" in err and "shapes_config.json" in err
    assert not (tmp_path / "ft").exists()  # nothing written


def test_the_distilled_pixel_decoder_draws_what_the_vae_draws(pipe):
    """The shipped `pixel_decoder/` (what `pixels()` reads on `shapes`) reproduces the VAE
    decoder's picture of x̂₀ along a sampling run of a scene it was not trained on: small
    per-pixel error, and the area alike each palette colour (what `drawn` measures) within a few
    per cent."""
    from sgl.models.shapes import pixel_decoder
    from sgl.runtime.sampler import decode_pixels

    decoder = pixel_decoder.load(WEIGHTS_DIR)
    assert decoder is not None, "no pixel_decoder/ in the shipped folder: python -m sgl.models.shapes.pixel_decoder"
    estimates = pixel_decoder.sampled_estimates(pipe, [123456, 123457], steps=20)[8:]  # past the first blur
    with torch.no_grad():
        fast, reference = decoder(estimates), decode_pixels(pipe.vae, estimates)
    assert fast.shape == reference.shape == (len(estimates), 3, 64, 64)
    assert (fast - reference).abs().mean() < 0.03
    assert pixel_decoder.likeness_error(fast, reference) < 0.1


def test_pixels_read_the_distilled_decoder_where_a_folder_ships_one():
    from sgl.runtime.pipelines import load_pipeline
    from sgl.runtime.sampler import guidance_picture

    loaded, _ = load_pipeline("shapes", device="cpu")
    assert loaded._sgl_pixel_decoder is not None
    x0 = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(guidance_picture(loaded, x0), loaded._sgl_pixel_decoder(x0))


def test_distilling_a_pixel_decoder_runs_and_writes_a_loadable_folder(tmp_path):
    """`python -m sgl.models.shapes.pixel_decoder` in miniature: sample, decode, train, save."""
    from sgl.models.shapes import pixel_decoder

    decoder, info = pixel_decoder.distill(WEIGHTS_DIR, scenes=16, renders=16, iters=3, steps=2, log=lambda *_: None)
    assert info["iters"] == 3 and info["held_out_l1"] > 0
    path = pixel_decoder.save(decoder, tmp_path, info)
    again = pixel_decoder.load(tmp_path)
    x0 = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(again(x0), decoder(x0), atol=0.05)  # saved in fp16
    assert (path / "distilled.json").is_file()


def test_estimate_rows_are_told_by_scene_in_every_chunk():
    """The held-out captions are picked by scene: rows come in chunks of scenes sampled
    together, each step's rows scene by scene — a last, shorter chunk included."""
    from sgl.models.shapes.pixel_decoder import estimate_scenes

    assert estimate_scenes(5, 2, batch=3).tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 3, 4]
