"""Export: Hugging Face checkpoints to GGUF (llama.cpp), quantization, Ollama Modelfiles.

    >>> from downsize.export.gguf import export_gguf
    >>> export_gguf("zoo:coder-teacher-qwen", "teacher-f16.gguf", quant="F16").quant
    'F16'
    >>> from downsize.export.quantize import quantize_gguf
    >>> quantize_gguf("teacher-f16.gguf", "teacher-q8_0.gguf", "Q8_0")["quant"]
    'Q8_0'
"""
