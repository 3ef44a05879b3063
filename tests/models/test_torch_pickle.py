"""The torch-free reader returns exactly what torch.save wrote, and refuses anything else."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from jaxlrp.models import UnsafePickleError, load_torch_object, read_torch_state_dict


def _tensors(torch) -> dict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "float32": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
        "float64": torch.randn(2, 5, dtype=torch.float64),
        "int64": torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4),
        "half": torch.randn(5).half(),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "transposed": base.t(),  # non-contiguous: strides (1, 6)
        "offset_view": base[1:, 2:5],  # storage offset 8, strides (6, 1)
        "shared_base": base,  # same storage as the two views above
        "empty": torch.zeros(0, 3),
    }


@pytest.fixture(params=[True, False], ids=["zip", "legacy"])
def saved(request, torch, tmp_path):
    """A state dict written by real torch.save, in the zip and the legacy format."""
    tensors = _tensors(torch)
    path = tmp_path / "weights.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=request.param)
    return path, tensors


def test_reader_returns_the_saved_tensors(saved):
    path, tensors = saved
    loaded = read_torch_state_dict(path)
    assert list(loaded) == list(tensors)
    for key, tensor in tensors.items():
        expected = tensor.numpy()
        assert loaded[key].dtype == expected.dtype, key
        assert loaded[key].shape == expected.shape, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)


def test_reader_accepts_an_open_file(saved):
    path, tensors = saved
    with open(path, "rb") as file:
        loaded = read_torch_state_dict(file)
    np.testing.assert_array_equal(loaded["transposed"], tensors["transposed"].numpy())


def test_reader_handles_bfloat16_and_parameters(torch, tmp_path):
    weight = torch.nn.Parameter(torch.randn(2, 3))
    data = {"bf16": torch.randn(4).bfloat16(), "param": weight}
    torch.save(data, tmp_path / "p.pth")
    loaded = read_torch_state_dict(tmp_path / "p.pth")
    np.testing.assert_array_equal(loaded["bf16"].astype(np.float32), data["bf16"].float().numpy())
    np.testing.assert_array_equal(loaded["param"], weight.detach().numpy())


def test_reader_unwraps_checkpoints_and_nested_dicts(torch, tmp_path):
    linear = torch.nn.Linear(3, 2)
    torch.save({"epoch": 4, "state_dict": linear.state_dict()}, tmp_path / "ckpt.pth")
    loaded = read_torch_state_dict(tmp_path / "ckpt.pth")
    assert set(loaded) == {"weight", "bias"}
    np.testing.assert_array_equal(loaded["weight"], linear.weight.detach().numpy())
    torch.save({"encoder": {"w": torch.ones(2)}}, tmp_path / "nested.pth")
    assert set(read_torch_state_dict(tmp_path / "nested.pth")) == {"encoder.w"}


def test_reader_keeps_non_tensor_objects_in_load_torch_object(torch, tmp_path):
    torch.save({"epoch": 4, "names": ["a", "b"], "w": torch.ones(2)}, tmp_path / "x.pth")
    loaded = load_torch_object(tmp_path / "x.pth")
    assert loaded["epoch"] == 4 and loaded["names"] == ["a", "b"]
    with pytest.raises(ValueError, match="'epoch' is a int"):
        read_torch_state_dict(tmp_path / "x.pth")


def test_reader_reads_the_zip_root_folder_whatever_its_name(torch, tmp_path):
    path = tmp_path / "renamed.pth"
    torch.save({"w": torch.arange(3.0)}, tmp_path / "orig.pth")
    with zipfile.ZipFile(tmp_path / "orig.pth") as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            dst.writestr("something_else/" + name.split("/", 1)[1], src.read(name))
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], [0.0, 1.0, 2.0])


# --- malicious files -----------------------------------------------------------------------


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _DictSubclass(dict):
    pass


def _zip_with(payload: bytes, path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")


def _legacy_with(payload: bytes, path, position: int) -> None:
    header = [pickle.dumps(0x1950A86A20F9469CFC6C), pickle.dumps(1001), pickle.dumps({})]
    header.insert(position, payload)
    path.write_bytes(b"".join(header[:4]) + pickle.dumps([]))


@pytest.mark.parametrize("attack", [_RunsShell, _Evals], ids=["os.system", "builtins.eval"])
@pytest.mark.parametrize("container", ["zip", "legacy-main", "legacy-first-pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, attack, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": attack(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        _zip_with(payload, path)
    else:
        _legacy_with(payload, path, position=3 if container == "legacy-main" else 0)
    refused = r"refusing to load (posix|nt|os|builtins|__builtin__)\."
    with pytest.raises(UnsafePickleError, match=refused):
        read_torch_state_dict(path)
    assert not marker.exists()


def test_classes_outside_the_allow_list_are_refused(tmp_path):
    path = tmp_path / "subclass.pth"
    _zip_with(pickle.dumps(_DictSubclass(w=1), protocol=2), path)
    with pytest.raises(UnsafePickleError, match="_DictSubclass"):
        read_torch_state_dict(path)


def test_whole_module_pickles_are_refused(torch, tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(UnsafePickleError, match=r"refusing to load torch\.nn"):
        read_torch_state_dict(tmp_path / "module.pth")


def test_tensor_reaching_past_its_storage_is_refused(torch, tmp_path):
    """Strides come from the file: they must not let as_strided read foreign memory."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src:
        names = src.namelist()
        root = names[0].split("/")[0]
        pkl = src.read(f"{root}/data.pkl")
        files = {n: src.read(n) for n in names}
    # Same pickle, stride of the 4-element tensor patched from 1 to 1000.
    tampered = pkl.replace(b"K\x01\x85", b"M\xe8\x03\x85", 1)
    assert tampered != pkl
    files[f"{root}/data.pkl"] = tampered
    path = tmp_path / "tampered.pth"
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in files.items():
            dst.writestr(name, data)
    with pytest.raises(ValueError, match="past the end"):
        read_torch_state_dict(path)


def test_non_torch_files_are_rejected(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(pickle.dumps("hello"))
    with pytest.raises(ValueError, match="magic number"):
        read_torch_state_dict(path)
