// RwLock now lives in engine/mutex.h, annotated for clang's -Wthread-safety. This header stays
// only for the files that still include it, and goes once none does.
#pragma once

#include "engine/mutex.h"  // IWYU pragma: export
