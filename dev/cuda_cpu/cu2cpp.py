#!/usr/bin/env python3
"""CPU backend: the one mechanical step between a CUDA source and g++. Rewrites
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  ::cuda_cpu::launch(kernel, "kernel", grid, block...)(args)
  extern __shared__ T name[];                      ->  T* name = (T*)::cuda_cpu::dynamic_smem();
and nothing else; a #line directive keeps file names and line numbers (errors, __FILE__) those of the source.
Usage: cu2cpp.py SRC OUT  (SRC: the .cu or CUDA header as nvcc reads it)."""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:\s*<[^<>;()]*>)?)\s*<<<(.*?)>>>", re.S)
DYN_SMEM = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>, ]*?)\s*"
                      r"(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def rewrite(text):
    def launch(m):
        name = re.sub(r"\s+", "", m.group(1))
        return '::cuda_cpu::launch(%s, "%s", %s)' % (m.group(1), name, m.group(2))

    text = LAUNCH.sub(launch, text)
    return DYN_SMEM.sub(lambda m: "%s* %s = (%s*)::cuda_cpu::dynamic_smem();" % (m.group(1), m.group(2), m.group(1)),
                        text)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cu2cpp.py SRC OUT")
    src, out = sys.argv[1], sys.argv[2]
    try:
        with open(src, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        sys.exit("cu2cpp: cannot read %s: %s" % (src, e.strerror))
    body = rewrite(text)
    if "<<<" in body:
        line = body[: body.index("<<<")].count("\n") + 1
        sys.exit("cu2cpp: %s:%d: a kernel launch this rewriter does not understand" % (src, line))
    with open(out, "w", encoding="utf-8") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(body)


if __name__ == "__main__":
    main()
