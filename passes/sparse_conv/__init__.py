"""Sparse 3-D convolution (issue 6): the numpy reference (``reference``), Relax emitters
(``ops``) lowered to hand-written TIR (``kmap``, ``hashmap``, ``conv``, ``dense``), the epilogue
fusion pass (``fuse``) and the dataflow autotuner (``tune``)."""
