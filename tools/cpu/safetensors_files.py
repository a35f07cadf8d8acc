"""Reading and writing safetensors files with the standard library: an 8-byte little-endian header length,
a JSON header mapping each tensor name to its dtype, shape and [begin, end) data offsets (relative to the
end of the header), then the data."""
import json
import mmap
import os
import struct

DTYPE_SIZES = {"BF16": 2, "F16": 2, "F32": 4}


class Tensor:
    def __init__(self, name, dtype, shape, view):
        self.name, self.dtype, self.shape, self.view = name, dtype, shape, view


def open_checkpoint(model_dir):
    """{name: Tensor} over every *.safetensors file of a model directory (one file or index-listed shards), the data
    memory-mapped."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    if not files:
        raise SystemExit(f"{model_dir}: no *.safetensors files")
    tensors = {}
    for file in files:
        with open(os.path.join(model_dir, file), "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_len])
        base = 8 + header_len
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in DTYPE_SIZES:
                raise SystemExit(f"{file}: tensor {name} has dtype {entry['dtype']}; only BF16, F16 and F32 are read")
            begin, end = entry["data_offsets"]
            tensors[name] = Tensor(name, entry["dtype"], entry["shape"], memoryview(data)[base + begin:base + end])
    return tensors


def write_file(path, entries, metadata=None):
    """entries: [(name, dtype, shape, write(file))] in file order; write must produce exactly the tensor's bytes."""
    header = {}
    offset = 0
    for name, dtype, shape, _ in entries:
        size = DTYPE_SIZES[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    # The data should start 8-byte aligned; safetensors pads the header with spaces for that.
    encoded += b" " * (-(8 + len(encoded)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, _, _, write in entries:
            start = f.tell()
            write(f)
            expected = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            if f.tell() - start != expected:
                raise ValueError(f"{name}: wrote {f.tell() - start} bytes, its shape needs {expected}")
