"""Export: Hugging Face checkpoints to GGUF (llama.cpp), quantization, Ollama Modelfiles.

    >>> from downsize.export.gguf import export_gguf
    >>> export_gguf("zoo:coder-teacher", "teacher-f16.gguf", quant="F16")
    >>> from downsize.export.quantize import quantize_gguf
    >>> quantize_gguf("teacher-f32.gguf", "teacher-q4_k_m.gguf", "Q4_K_M", imatrix="teacher.imatrix.gguf")
"""
