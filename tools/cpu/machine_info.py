#!/usr/bin/env python3
"""Prints, as JSON, the machine and software a CPU comparison ran on, merged with KEY=VALUE arguments (commits,
paths) and KEY=@FILE arguments (a JSON file's object, e.g. a greedy check's result)."""
import json
import os
import platform
import subprocess
import sys

# The instruction-set extensions that decide which dot-product paths the engines can take.
FLAGS_OF_INTEREST = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def lscpu():
    fields = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def first_line(command):
    try:
        return subprocess.run(command, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def dotnet_runtime():
    """The .NET runtime's name and version, without its install path."""
    try:
        lines = subprocess.run(["dotnet", "--list-runtimes"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return None
    versions = [line.split(" [")[0] for line in lines if line.startswith("Microsoft.NETCore.App ")]
    return versions[-1] if versions else None


def main():
    cpu = lscpu()
    flags = set(cpu.get("Flags", "").split())
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    info = {
        "machine": {
            "cpu_model": cpu.get("Model name"), "vendor": cpu.get("Vendor ID"),
            "cores_per_socket": cpu.get("Core(s) per socket"), "sockets": cpu.get("Socket(s)"),
            "threads_per_core": cpu.get("Thread(s) per core"), "online_cpus": os.cpu_count(),
            "l2": cpu.get("L2 cache"), "l3": cpu.get("L3 cache"), "hypervisor": cpu.get("Hypervisor vendor"),
            "memory_gib": round(mem_kib / 2**20, 1),
            "flags_of_interest": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
            "kernel": platform.release(),
        },
        "software": {"cxx": first_line(["c++", "--version"]), "cmake": first_line(["cmake", "--version"]),
                     "dotnet_runtime": dotnet_runtime(), "python": platform.python_version()},
    }
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        if value.startswith("@"):
            with open(value[1:]) as f:
                info[key] = json.load(f)
        else:
            info[key] = value
    json.dump(info, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
