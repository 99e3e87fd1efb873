"""Image folders: layouts, CelebA's text files, decoding, the cache, bad files, and a colour
VAE trained from the CLI whose 'Red' attribute vector turns decoded shapes red."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_folders import ATTRIBUTES, celeba_folder, class_folder, red_channel_along_red_vector
from PIL import Image

from pyro_vae.cli import main
from pyro_vae.data import folders
from pyro_vae.data.datasets import FolderOptions, load_dataset
from pyro_vae.data.folders import (ByteImages, decoded_images, hash_partition, load_image, read_celeba_attributes,
                                   scan_image_folder)
from pyro_vae.errors import DataError


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, celeba_folder(root, n=300)


def test_load_image_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    # 30 wide, 60 high: three horizontal bands of 20 rows, red / green / blue. Resized to
    # 10 x 20 and cropped to the central 10 x 10, only the green band survives.
    pixels = np.zeros((60, 30, 3), dtype=np.uint8)
    pixels[:20, :, 0] = pixels[20:40, :, 1] = pixels[40:, :, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "bands.png")
    rgb = load_image(tmp_path / "bands.png", 10, "rgb")
    assert rgb.shape == (3, 10, 10) and rgb.dtype == np.uint8
    assert rgb[1, 2:8].min() == 255 and rgb[0, 2:8].max() == 0 and rgb[2, 2:8].max() == 0
    grey = load_image(tmp_path / "bands.png", 10, "grey")
    assert grey.shape == (1, 10, 10)
    assert abs(int(grey[0, 5, 5]) - round(0.587 * 255)) <= 1  # ITU-R 601 luma of pure green


def test_celeba_layout_gives_the_partition_and_attributes_by_name(celeba_dir):
    root, truth = celeba_dir
    layout = scan_image_folder(root)
    assert layout.kind == "celeba" and layout.attribute_names == ATTRIBUTES
    assert layout.files == truth["names"]
    np.testing.assert_array_equal(layout.partition, truth["partition"])
    np.testing.assert_array_equal(layout.attributes, truth["attributes"])
    data = load_dataset("image-folder", str(root), folder=FolderOptions(size=16))
    assert data.attribute_names == ATTRIBUTES and data.image_shape == (3, 16, 16)
    for code, split in enumerate((data.train, data.valid, data.test)):
        expected = [n for n, s in zip(truth["names"], truth["partition"]) if s == code]
        assert list(split.names) == expected
        rows = [truth["names"].index(n) for n in split.names]
        np.testing.assert_array_equal(split.attributes.numpy(), truth["attributes"][rows])
    red = data.test.attributes[:, ATTRIBUTES.index("Red")]
    images = data.test.images[:]
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    # The red images are redder than the others (mean red minus mean of the other channels).
    redness = images[:, 0].mean((1, 2)) - images[:, 1:].mean((1, 2, 3))
    assert redness[red].mean() > redness[~red].mean() + 0.03


def test_without_a_partition_file_the_split_follows_the_file_names(tmp_path):
    celeba_folder(tmp_path, n=120, partition=False)
    names = scan_image_folder(tmp_path).files
    split = hash_partition(names)
    assert set(np.unique(split)) == {0, 1, 2} and 0.65 < (split == 0).mean() < 0.95
    # Adding images never moves the others between splits.
    np.testing.assert_array_equal(hash_partition(names[:50]), split[:50])


def test_class_subfolders_become_labels(tmp_path):
    truth = dict(class_folder(tmp_path, n=90))
    data = load_dataset("image-folder", str(tmp_path), folder=FolderOptions(size=8, mode="grey"))
    assert data.class_names == ("blue", "green", "red") and data.image_shape == (1, 8, 8)
    for split in (data.train, data.valid, data.test):
        assert [data.class_names[k] for k in split.labels.tolist()] == [truth[n] for n in split.names]
    assert len(data.train) + len(data.valid) + len(data.test) == 90



def test_samples_of_a_conditional_run_name_their_rows_by_the_sub_folders(tmp_path, monkeypatch):
    """`pyro-vae sample` of a CVAE trained on class sub-folders named its rows 0, 1, 2 (the names
    of the data sets it knows by name), where the run's own samples.png names them by folder."""
    from pyro_vae import plots

    class_folder(tmp_path / "data", n=60)
    run = tmp_path / "run"
    assert main(["train", "--model", "cvae", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"),
                 "--image-size", "8", "--likelihood", "gaussian", "--binarize", "none", "--latent-dim", "2",
                 "--hidden-dims", "16", "--epochs", "1", "--figures", "false", "--no-progress",
                 "--run-dir", str(run)]) == 0
    rows = []
    monkeypatch.setattr(plots, "_rows_figure", lambda drawn, path, *args, **kwargs: rows.append(drawn) or path)
    titles = []
    monkeypatch.setattr(plots, "_show", lambda ax, grid, title: titles.append(title))
    assert main(["sample", str(run), "-n", "6", "-o", str(tmp_path / "s.png")]) == 0
    assert [name for name, _ in rows[0]] == ["blue", "green", "red"]  # sorted sub-folder names
    assert main(["sample", str(run), "--label", "2", "-n", "4", "-o", str(tmp_path / "s2.png")]) == 0
    assert titles[-1] == "4 samples of class red (decoder means)"


def test_images_both_loose_and_in_sub_folders_are_refused_not_half_dropped(tmp_path):
    # Taken as class sub-folders, the loose images were left out in silence (and a flat folder
    # with one sub-folder of thumbnails became a one-class data set of the thumbnails).
    class_folder(tmp_path, n=30)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "stray.png")
    with pytest.raises(DataError, match=r"holds images both directly \(stray.png, ... 1 of them\) and in sub-folders"):
        scan_image_folder(tmp_path)
    (tmp_path / "stray.png").unlink()
    assert scan_image_folder(tmp_path).kind == "classes"


def test_a_class_whose_images_lie_in_a_deeper_folder_is_refused_not_dropped(tmp_path):
    # blue/2020/*.png: 'blue' held no image directly, so it was no class, and its images were left out
    class_folder(tmp_path, n=30)
    (tmp_path / "blue" / "2020").mkdir()
    for image in (tmp_path / "blue").glob("*.png"):
        image.rename(tmp_path / "blue" / "2020" / image.name)
    with pytest.raises(DataError, match=r"blue holds images only in folders below it \(blue/2020/.*\.png\)"):
        scan_image_folder(tmp_path)
    (tmp_path / "notes").mkdir()  # a sub-folder with no images at all is no class, as before
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    for image in (tmp_path / "blue" / "2020").glob("*.png"):
        image.rename(tmp_path / "blue" / image.name)
    assert scan_image_folder(tmp_path).class_names == ("blue", "green", "red")

MALFORMED = [
    ("3\nA B\n1.jpg 1 -1\n2.jpg 1 1\n", "declares 3 images"),
    ("2\nA B\n1.jpg 1 -1\n2.jpg 1\n", "line 4 has 1 values"),
    ("2\nA B\n1.jpg 1 0\n2.jpg 1 1\n", "line 3 has a value other than 1 or -1"),
    ("2\nA A\n1.jpg 1 -1\n2.jpg 1 1\n", "distinct attribute names"),
    ("A B\n1.jpg 1 -1\n", "must start with the number of images"),
    ("2\nA B\n1.jpg 1 -1\n1.jpg 1 1\n", "more than once"),
]


@pytest.mark.parametrize("text, message", MALFORMED)
def test_malformed_attribute_files_are_refused_with_the_reason(tmp_path, text, message):
    (tmp_path / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_celeba_attributes(tmp_path / "list_attr_celeba.txt")


def test_an_attribute_file_with_a_byte_order_mark_is_read(tmp_path):
    """A BOM (a file saved by Windows Notepad) made the count "\ufeff2", refused as not a number."""
    (tmp_path / "list_attr_celeba.txt").write_text("\ufeff2\nA B\n1.jpg 1 -1\n2.jpg -1 1\n", encoding="utf-8")
    names, files, values = read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    assert names == ("A", "B") and files == ["1.jpg", "2.jpg"] and values.tolist() == [[True, False], [False, True]]


def test_a_partition_file_without_the_attribute_file_is_refused_not_passed_over(tmp_path):
    # the images were split by file name (80/10/10) instead of by the partition given, without a word
    celeba_folder(tmp_path, n=30)
    (tmp_path / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError, match=r"list_eval_partition.txt gives CelebA's split, which is read with "
                                        r"CelebA's list_attr_celeba.txt, and .* has none"):
        scan_image_folder(tmp_path)


def test_a_partition_file_missing_images_is_refused(tmp_path):
    truth = celeba_folder(tmp_path, n=30)
    lines = (tmp_path / "list_eval_partition.txt").read_text().splitlines()
    (tmp_path / "list_eval_partition.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=f"no split for 1 of the images .*{truth['names'][-1]}"):
        scan_image_folder(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 3\n")
    with pytest.raises(DataError, match=r"line 1 must be a file name and 0 \(train\)"):
        scan_image_folder(tmp_path)


def test_malformed_attributes_end_the_cli_with_exit_2_and_one_sentence(tmp_path, capsys):
    celeba_folder(tmp_path / "data", n=30)
    attr = tmp_path / "data" / "list_attr_celeba.txt"
    attr.write_text(attr.read_text().replace(" 1", " 2", 1))
    code = main(["train", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "list_attr_celeba.txt line 3 has a value other than 1 or -1" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "last.pt").exists()


def test_unreadable_images_are_named_and_skipped_only_when_asked(tmp_path, capsys):
    class_folder(tmp_path / "data", n=60)
    (tmp_path / "data" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = Image.open(next((tmp_path / "data" / "green").glob("*.png")))
    good.save(tmp_path / "data" / "green" / "truncated.jpg")
    blob = (tmp_path / "data" / "green" / "truncated.jpg").read_bytes()
    (tmp_path / "data" / "green" / "truncated.jpg").write_bytes(blob[: len(blob) // 3])
    options = FolderOptions(size=8)
    with pytest.raises(DataError, match=r"2 image\(s\) .* cannot be read: green/truncated.jpg: .*red/broken.png"):
        load_dataset("image-folder", str(tmp_path / "data"), folder=options)
    options.skip_bad = True
    data = load_dataset("image-folder", str(tmp_path / "data"), folder=options)
    assert "skipping 2 unreadable image(s)" in capsys.readouterr().err
    names = data.train.names + data.valid.names + data.test.names
    assert len(names) == 60 and "red/broken.png" not in names
    code = main(["train", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                 "--image-size", "8", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "red/broken.png" in err and "--skip-bad-images" in err


def test_workers_and_the_memory_mapped_cache_give_the_same_bytes(tmp_path, monkeypatch):
    class_folder(tmp_path / "data", n=40)
    layout = scan_image_folder(tmp_path / "data")
    plain, keep = decoded_images(layout, 12)
    assert keep.all()
    cached, _ = decoded_images(layout, 12, workers=2, cache_dir=tmp_path / "cache")
    assert torch.equal(plain, cached)
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob(".*tmp*"))

    def no_decoding(*args):
        raise AssertionError("a cached folder must not be decoded again")

    monkeypatch.setattr(folders, "load_image", no_decoding)
    again, _ = decoded_images(layout, 12, cache_dir=tmp_path / "cache")
    assert torch.equal(again, plain)
    assert isinstance(np.load(files[0], mmap_mode="r"), np.memmap)
    # A changed file changes the cache key: the folder is decoded afresh (and here fails).
    monkeypatch.undo()
    Image.new("RGB", (40, 48), (255, 255, 255)).save(tmp_path / "data" / layout.files[0])
    layout = scan_image_folder(tmp_path / "data")
    fresh, _ = decoded_images(layout, 12, cache_dir=tmp_path / "cache")
    assert fresh[0].float().mean() == 255 and len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_a_cache_decoded_by_an_earlier_decoder_is_decoded_again(tmp_path, monkeypatch):
    """The cache key named the files, size and mode but not the decoder, so the caches written
    before 16-bit grey images were scaled (clipped white) were read back as they were."""
    class_folder(tmp_path / "data", n=12)
    layout = scan_image_folder(tmp_path / "data")
    decoded_images(layout, 12, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(folders, "DECODER_VERSION", folders.DECODER_VERSION + 1)
    decoded_images(layout, 12, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # a new key: decoded afresh, not read back


def test_byte_images_read_as_floats_by_rows():
    data = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2)
    images = ByteImages(data, rows=torch.tensor([4, 1, 3]))
    assert len(images) == 3 and images.shape == (3, 3, 2, 2)
    assert torch.equal(images[0], data[4].float() / 255)
    assert torch.equal(images[torch.tensor([2, 0])], data[[3, 4]].float() / 255)
    assert torch.equal(images[:], data[[4, 1, 3]].float() / 255)
    assert torch.equal(images.subset(slice(1, 3))[:], data[[1, 3]].float() / 255)


def test_colour_vae_trains_from_the_cli_and_the_red_vector_reddens(tmp_path, capsys, monkeypatch):
    from pyro_vae.runs import open_run, read_metrics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where --cache-images writes
    celeba_folder(tmp_path / "data", n=600, seed=3)
    run_dir = tmp_path / "run"
    code = main(["train", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"), "--image-size", "16",
                 "--network", "conv", "--conv-channels", "16,32", "--hidden-dims", "128", "--latent-dim", "8",
                 "--batch-norm", "true", "--likelihood", "gaussian-learned-per-channel", "--epochs", "60",
                 "--batch-size", "32", "--cache-images", "true", "--workers", "2", "--run-dir", str(run_dir)])
    assert code == 0, capsys.readouterr().err
    assert len(list((tmp_path / "cache" / "pyro-vae" / "image-folders").glob("*.npy"))) == 1
    history = read_metrics(run_dir)
    # Per-pixel Gaussian densities: the validation ELBO climbs by thousands of nats.
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"] + 300
    run = open_run(run_dir)
    data = run.dataset()
    # The mean red channel of the decoded images [alpha = -2 .. 2], averaged over the test
    # images that are not red (alpha = 0). A red shape covers about a fifth of the image and
    # adds about 0.7 to the red channel there. Measured over six seeds: +0.026 to +0.06 at
    # alpha = 1 and +0.083 to +0.145 at alpha = 2.
    red_channel = red_channel_along_red_vector(run)
    assert red_channel[3] - red_channel[2] > 0.015, red_channel
    assert red_channel[4] - red_channel[2] > 0.05, red_channel
    for kind, extra in (("arithmetic", ["--attribute", "Red"]),
                        ("interpolate", ["--image-a", data.test.names[0], "--image-b", data.test.names[1]])):
        out = tmp_path / f"{kind}.png"
        assert main(["plot", str(run_dir), "--kind", kind, *extra, "-o", str(out)]) == 0
        assert Image.open(out).size[0] > 100
    assert main(["plot", str(run_dir), "--kind", "arithmetic", "--attribute", "Smiling", "-o",
                 str(tmp_path / "x.png")]) == 2
    assert "no attribute or class 'Smiling' (its attributes: Red, Green, Blue, Left, Square)" in capsys.readouterr().err


def test_interpolating_from_a_training_image_of_a_dynamically_binarized_run_draws_it_binary(tmp_path, capsys,
                                                                                            monkeypatch):
    """--image-a may name a training image, whose grey levels a dynamically binarized Bernoulli run
    never reads (each epoch draws them afresh): it is drawn once with a fixed seed, as the validation
    and test images are, so the figures' support check (that of fit) lets it through as 0/1 pixels."""
    from pyro_vae import plots

    class_folder(tmp_path / "data", n=60)
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"), "--image-size", "8",
                 "--binarize", "dynamic", "--likelihood", "bernoulli", "--latent-dim", "2", "--hidden-dims", "16",
                 "--epochs", "1", "--figures", "false", "--run-dir", str(run_dir)]) == 0
    data = load_dataset("image-folder", str(tmp_path / "data"), folder=FolderOptions(size=8), binarize="dynamic")
    drawn = []
    interpolate = plots.plot_interpolation
    monkeypatch.setattr(plots, "plot_interpolation", lambda model, guide, x_a, x_b, *a, **k: (
        drawn.extend([x_a, x_b]), interpolate(model, guide, x_a, x_b, *a, **k))[1])
    capsys.readouterr()
    assert main(["plot", str(run_dir), "--kind", "interpolate", "--image-a", data.train.names[0], "--image-b",
                 data.test.names[0], "-o", str(tmp_path / "i.png")]) == 0, capsys.readouterr().err
    assert all(((x == 0) | (x == 1)).all() for x in drawn) and (tmp_path / "i.png").is_file()


def test_empty_or_tiny_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset("image-folder", str(tmp_path / "empty"))
    class_folder(tmp_path / "tiny", n=3)
    with pytest.raises(DataError, match=r"split of .* would be empty \(3 readable images\)"):
        load_dataset("image-folder", str(tmp_path / "tiny"), folder=FolderOptions(size=8))


def test_an_image_too_large_for_pillow_is_an_unreadable_image_not_a_traceback(tmp_path, monkeypatch, capsys):
    class_folder(tmp_path / "data", n=40)
    Image.new("L", (100, 100)).save(tmp_path / "data" / "red" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 100 x 100 is past twice that: a "decompression bomb"
    with pytest.raises(DataError, match=r"1 image\(s\) .* cannot be read: red/huge.png: .*DecompressionBombError"):
        load_dataset("image-folder", str(tmp_path / "data"), folder=FolderOptions(size=8))
    data = load_dataset("image-folder", str(tmp_path / "data"), folder=FolderOptions(size=8, skip_bad=True))
    assert "red/huge.png" not in data.train.names + data.valid.names + data.test.names
    assert "skipping 1 unreadable image(s): red/huge.png" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_loaded_not_a_traceback(tmp_path):
    import os

    class_folder(tmp_path / "data", n=40)
    first = sorted((tmp_path / "data" / "red").iterdir())[0]
    os.rename(first, os.fsencode(first.parent) + b"/caf\xe9.png")  # Latin-1, as from an old archive
    name = "red/" + os.fsdecode(b"caf\xe9.png")
    import hashlib

    names = [f"red/{i}é.png" for i in range(50)]  # UTF-8 names keep the split they had: their UTF-8 bytes hashed
    buckets = np.array([int(hashlib.sha256(n.encode("utf-8")).hexdigest()[:8], 16) % 10 for n in names])
    assert (hash_partition(names) == np.where(buckets < 8, 0, np.where(buckets == 8, 1, 2))).all()
    for cache in (None, tmp_path / "cache"):
        data = load_dataset("image-folder", str(tmp_path / "data"), folder=FolderOptions(size=8, cache_dir=cache))
        assert name in data.train.names + data.valid.names + data.test.names


def test_16_bit_grey_images_are_scaled_to_8_bits_not_clipped_white(tmp_path):
    levels = np.array([[0, 257 * 40], [257 * 128, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    for mode, channels in (("grey", 1), ("rgb", 3)):
        image = load_image(tmp_path / "g16.png", 16, mode)
        assert image.shape == (channels, 16, 16)
        assert (image[:, :8, :8] == 0).all() and (image[:, :8, 8:] == 40).all()
        assert (image[:, 8:, :8] == 128).all() and (image[:, 8:, 8:] == 255).all()


def test_a_damaged_image_cache_is_one_sentence_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the CLI's --cache-images true is here
    class_folder(tmp_path / "data", n=40)
    options = FolderOptions(size=8, cache_dir=tmp_path / "xdg" / "pyro-vae" / "image-folders")
    load_dataset("image-folder", str(tmp_path / "data"), folder=options)
    (cache,) = options.cache_dir.glob("*[0-9a-f].npy")
    cache.write_bytes(cache.read_bytes()[:1000])  # cut short
    with pytest.raises(DataError, match=r"the image cache .*\.npy is damaged .*delete .*\.bad\.json beside it"):
        load_dataset("image-folder", str(tmp_path / "data"), folder=options)
    cache.unlink()
    load_dataset("image-folder", str(tmp_path / "data"), folder=options)  # written again
    bad = cache.with_name(cache.stem + ".bad.json")
    bad.write_text('{"red/')
    code = main(["train", "--dataset", "image-folder", "--data-dir", str(tmp_path / "data"), "--image-size", "8",
                 "--cache-images", "true", "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "is damaged" in err and "Traceback" not in err


def test_a_base_name_shared_by_images_of_several_classes_is_refused_not_the_first_taken(tmp_path):
    # --image-a 1.png with red/1.png and blue/1.png interpolated from whichever came first
    from pyro_vae.data.datasets import ImageDataset, Split
    from pyro_vae.errors import PyroVAEError
    from pyro_vae.runs import _image_by_name

    def split(*names):
        return Split(torch.arange(len(names), dtype=torch.float32).reshape(-1, 1, 1, 1) + 10 * len(names[0]),
                     names=names)

    data = ImageDataset("shapes", split("red/1.png", "red/2.png"), split("green/3.png"), split("blue/1.png"))
    with pytest.raises(PyroVAEError, match=r"'1.png' names 2 images \(blue/1.png, red/1.png\); give the one you mean "
                                           r"by its path in the folder"):
        _image_by_name(data, "1.png")
    assert _image_by_name(data, "red/1.png") == data.train.images[0]
    assert _image_by_name(data, "2.png") == data.train.images[1] and _image_by_name(data, "3.png") == data.valid.images[0]
