// Deliberately wrong, and never built: scripts/check-thread-safety.py requires clang's
// -Wthread-safety to reject this file, proving that the check's flags and engine/mutex.h's
// annotations reach the compiler.
#include "engine/mutex.h"

namespace luxdb::engine {

class Counter {
 public:
  void Increment() { ++count_; }  // count_ is written without mu_

 private:
  Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

void Use() {
  Counter counter;
  counter.Increment();
}

}  // namespace luxdb::engine
