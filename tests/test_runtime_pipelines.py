"""Loading models: objects, local folders, the embedded model; errors as diagnostics."""

import json

import pytest
import torch

from sgl.diagnostics import SGLError, Span
from sgl.runtime.pipelines import SHAPES_DIR, load_pipeline, make_scheduler, model_info


def _code(excinfo):
    return excinfo.value.diagnostics[0].code


def test_pipeline_objects_get_family_and_geometry(tiny_sd, tiny_sdxl):
    info = model_info(tiny_sd)
    assert (info.family, info.latent_channels, info.vae_scale_factor) == ("sd", 4, 2)
    assert info.default_resolution == (32, 32) and info.latent_size(32, 48) == (16, 24)
    assert model_info(tiny_sdxl).family == "sdxl"
    pipe, info = load_pipeline(tiny_sd)
    assert pipe is tiny_sd and info.profile.attn_layers


def test_local_folder_loads_offline(tiny_sd_dir, tiny_sd):
    pipe, info = load_pipeline(str(tiny_sd_dir), device="cpu")
    assert info.family == "sd" and info.origin == str(tiny_sd_dir)
    assert pipe.unet.dtype == torch.float32
    x = torch.zeros(1, 4, 16, 16)
    emb = torch.zeros(1, 77, 32)
    with torch.no_grad():
        assert torch.equal(pipe.unet(x, 10, emb).sample, tiny_sd.unet(x, 10, emb).sample)


def test_missing_folder_is_e220_with_span(tmp_path):
    span = Span("p.sgl", 2, 1, 2, 20)
    with pytest.raises(SGLError) as err:
        load_pipeline(str(tmp_path / "nope"), span=span)
    assert _code(err) == "E220" and err.value.diagnostics[0].span == span


def test_folder_that_is_not_a_pipeline_is_e221(tmp_path):
    with pytest.raises(SGLError) as err:
        load_pipeline(str(tmp_path))
    assert _code(err) == "E221"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(SGLError) as err:
        load_pipeline(str(tmp_path))
    assert _code(err) == "E221" and "FluxPipeline" in err.value.diagnostics[0].message


def test_broken_folder_is_e222(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(SGLError) as err:
        load_pipeline(str(tmp_path))
    assert _code(err) == "E222"


def test_a_broken_picture_decoder_is_e222_at_the_model_line(tiny_sd_dir, tmp_path):
    """A folder's `pixel_decoder/` that cannot be read is a diagnostic, not a traceback."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, folder)
    (folder / "pixel_decoder").mkdir()
    (folder / "pixel_decoder" / "config.json").write_text("{\"channels\": [8]")
    span = Span("p.sgl", 1, 1, 1, 20)
    with pytest.raises(SGLError) as err:
        load_pipeline(str(folder), span=span)
    diagnostic = err.value.diagnostics[0]
    assert diagnostic.code == "E222" and "pixel_decoder" in diagnostic.message and diagnostic.span == span


def test_object_without_components_is_e221():
    with pytest.raises(SGLError) as err:
        load_pipeline(object())
    assert _code(err) == "E221"


@pytest.mark.skipif((SHAPES_DIR / "model_index.json").exists(), reason="the shapes model is installed")
def test_missing_shapes_model_is_a_clear_error():
    with pytest.raises(SGLError) as err:
        load_pipeline("shapes")
    assert _code(err) == "E220" and "shapes" in err.value.diagnostics[0].message


def test_make_scheduler(tiny_sd):
    assert type(make_scheduler(tiny_sd, "euler")).__name__ == "EulerDiscreteScheduler"
    assert make_scheduler(tiny_sd, None) is not tiny_sd.scheduler
    with pytest.raises(SGLError) as err:
        make_scheduler(tiny_sd, "fancy")
    assert _code(err) == "E224"
