// RwLock: a reader/writer lock that lets a waiting writer in ahead of new readers.
//
// std::shared_mutex on glibc prefers readers, so a steady stream of queries could starve an
// insert forever. This wraps a pthread rwlock set to prefer writers. It is a plain pthread
// lock, so ThreadSanitizer sees it (Debian's Abseil is not built for TSan, so absl::Mutex is
// invisible to it). Meets the SharedMutex requirements: use std::unique_lock for writers and
// std::shared_lock for readers. Readers must not re-lock recursively.
#pragma once

#include <pthread.h>

namespace luxdb::engine {

class RwLock {
 public:
  RwLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~RwLock() { pthread_rwlock_destroy(&lock_); }
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  void lock() { pthread_rwlock_wrlock(&lock_); }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

}  // namespace luxdb::engine
