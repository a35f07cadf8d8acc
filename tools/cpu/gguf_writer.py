"""A GGUF (version 3) file writer in the standard library only, from the format's specification
(ggml's docs/gguf.md): a header (magic "GGUF", version, tensor count, metadata count), the metadata
key/value pairs, one info record per tensor (name, dimensions innermost first, ggml type, offset),
padding to the alignment, then the tensors' data, each starting at a multiple of the alignment.

Tensors are given as callables that write their bytes, so a multi-gigabyte model streams from its
source files to the output without being held in memory.
"""
import struct

MAGIC = b"GGUF"
VERSION = 3
# general.alignment's default; the spec requires offsets to be multiples of it.
ALIGNMENT = 32

# Metadata value types (gguf_type in the spec).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR_FORMATS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
                   FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types used here (ggml_type in ggml.h).
GGML_F32 = 0
GGML_BF16 = 30
_TYPE_SIZES = {GGML_F32: 4, GGML_BF16: 2}


def _string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(value_type, value):
    if value_type == STRING:
        return _string(value)
    return struct.pack(_SCALAR_FORMATS[value_type], value)


class GgufWriter:
    def __init__(self):
        self._metadata = []  # (key, type, value, element type for arrays)
        self._tensors = []   # (name, dims innermost first, ggml type, write(file))

    def add(self, key, value_type, value):
        if value_type == ARRAY:
            raise ValueError("use add_array for arrays")
        self._metadata.append((key, value_type, value, None))

    def add_array(self, key, element_type, values):
        self._metadata.append((key, ARRAY, list(values), element_type))

    def add_tensor(self, name, shape, ggml_type, write):
        """shape is the row-major shape (outermost first, as safetensors and numpy give it); GGUF stores the
        dimensions the other way round (ne[0] is the contiguous one). write(file) must write exactly the tensor's
        bytes."""
        self._tensors.append((name, list(reversed(shape)), ggml_type, write))

    def _metadata_bytes(self):
        out = bytearray()
        for key, value_type, value, element_type in self._metadata:
            out += _string(key) + struct.pack("<I", value_type)
            if value_type == ARRAY:
                out += struct.pack("<IQ", element_type, len(value))
                if element_type in _SCALAR_FORMATS:
                    out += struct.pack("<%d%s" % (len(value), _SCALAR_FORMATS[element_type][1]), *value)
                else:
                    for item in value:
                        out += _value(element_type, item)
            else:
                out += _value(value_type, value)
        return out

    def write(self, path):
        sizes = []
        for name, dims, ggml_type, _ in self._tensors:
            count = 1
            for d in dims:
                count *= d
            sizes.append(count * _TYPE_SIZES[ggml_type])
        infos = bytearray()
        offset = 0
        offsets = []
        for (name, dims, ggml_type, _), size in zip(self._tensors, sizes):
            offsets.append(offset)
            infos += _string(name) + struct.pack("<I", len(dims))
            infos += struct.pack("<%dQ" % len(dims), *dims)
            infos += struct.pack("<IQ", ggml_type, offset)
            offset += _padded(size)
        with open(path, "wb") as f:
            f.write(MAGIC + struct.pack("<IQQ", VERSION, len(self._tensors), len(self._metadata)))
            f.write(self._metadata_bytes())
            f.write(infos)
            f.write(bytes(_padded(f.tell()) - f.tell()))
            data_start = f.tell()
            for (name, _, _, write), size, tensor_offset in zip(self._tensors, sizes, offsets):
                f.write(bytes(data_start + tensor_offset - f.tell()))
                before = f.tell()
                write(f)
                if f.tell() - before != size:
                    raise ValueError(f"tensor {name}: wrote {f.tell() - before} bytes, its shape needs {size}")


def _padded(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
