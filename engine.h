// The public C++ surface of engine: include this to load a model, tokenize,
// run spans of blocks and sample, from another program.
#pragma once

#define ENGINE_VERSION "0.1.0"

#include "core/dtype.h"
#include "core/error.h"
#include "core/gguf.h"
