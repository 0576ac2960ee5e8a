"""One declarative search space (YAML + a pure data model) and its compilers to each backend."""
