"""A real OpenAI-compatible server for the language-model tests: llama.cpp (PyPI `xllamacpp`)
serving a GGUF model on loopback. Usage: llm_server.py MODEL.gguf PORT. Prints "ready" once
listening; runs until killed."""
import signal
import sys

import xllamacpp as xlc

params = xlc.CommonParams()
params.model.path = sys.argv[1]
params.hostnames = ["127.0.0.1"]
params.port = int(sys.argv[2])
params.n_parallel = 1
params.cpuparams.n_threads = 1
server = xlc.Server(params)
print("ready", flush=True)
signal.pause()
