"""`python -m tunebench.bench.gpu_check SPEC`: the torch.compile child (compile_child.child_main), started by
hand."""

import sys

from tunebench.bench import child
from tunebench.bench.gpu_check.compile_child import child_main

if __name__ == "__main__":
    child.die_with_parent()
    sys.exit(child_main(sys.argv[1]))
