// The public C++ surface of engine: include this to read GGUF files, load a
// Llama-family model (whole or a span of blocks), tokenize, run and sample
// from another program. Link the engine_* static libraries.
#pragma once

#define ENGINE_VERSION "0.1.0"

#include "core/dtype.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/thread_pool.h"
#include "models/llama.h"
#include "models/loaded_model.h"
#include "models/sampling.h"
#include "models/tokenizer.h"
