// ThreadSanitizer support for the TSan build (KNOOPPUNT_SANITIZE=thread): makes the locking
// of Debian's abseil visible to TSan.
//
// Why: libabsl_synchronization from Debian is not instrumented, so TSan does not see
// absl::Mutex, CondVar, Notification or BlockingCounter synchronise anything and reports
// every access guarded by them as a race. Abseil built with TSan annotates these operations
// itself (ABSL_TSAN_MUTEX_* in mutex.cc); this file does the same from outside: it defines
// the public lock functions in the test executable, which interposes them for every caller
// (our code and the shared libraries), tells TSan what each one does with its mutex
// annotation interface, and calls the library's own function (dlsym RTLD_NEXT).
// Conditions (LockWhen, Await) are evaluated inside the library between the pre and post
// annotations, where TSan ignores memory accesses, as abseil's own annotations do.
// absl::Status is the same case: it shares its payload by an atomic reference count whose
// decrement (and the delete at zero) is in libabsl_status; UnrefNonInlined() is annotated as
// the release/acquire it is.
// Limits: Await/CondVar::Wait are annotated as writer-mode waits (all our code waits with the
// mutex held exclusively); Notification::HasBeenNotified() (inline) is not annotated, only
// Notify() / WaitForNotification*(); a lock taken inside a Condition the library evaluates
// is not annotated (only the outermost call on a thread is). Verified both ways: without this
// file a two-thread absl::MutexLock counter is reported as a race, with it a real unguarded
// access still is.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/status/status.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#if !defined(__SANITIZE_THREAD__) && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifndef __SANITIZE_THREAD__
#error "tsan_absl_sync.cc belongs only in the TSan build (KNOOPPUNT_SANITIZE=thread)"
#endif

namespace {

#define KNOOPPUNT_STR2(x) #x
#define KNOOPPUNT_STR(x) KNOOPPUNT_STR2(x)

// The library's definition of `absl::<inline namespace>::<rest>` (Itanium mangling, "NK"
// for a const member function; the inline namespace, "debian3" on bookworm, is read from
// absl/base/options.h).
void* Real(const char* rest, bool is_const) {
  const std::string ns = KNOOPPUNT_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name =
      std::string(is_const ? "_ZNK4absl" : "_ZN4absl") + std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    fprintf(stderr, "tsan_absl_sync: %s not found in abseil\n", name.c_str());
    abort();
  }
  return fn;
}

template <typename Fn>
Fn RealFn(const char* rest, bool is_const = false) {
  return reinterpret_cast<Fn>(Real(rest, is_const));
}

// Marks `mu` as released by a wait that gives it up and then takes it again.
void WaitUnlock(absl::Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
}

// The library's public functions call each other (AwaitWithTimeout calls AwaitWithDeadline,
// Notify locks its mutex, ...) and those calls reach the functions below too; only the
// outermost call on a thread is the caller's operation and is annotated.
thread_local int depth = 0;
class Outermost {
 public:
  Outermost() : outermost_(depth++ == 0) {}
  ~Outermost() { --depth; }
  explicit operator bool() const { return outermost_; }

 private:
  const bool outermost_;
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using MutexFn = void (*)(Mutex*);
using MutexTryFn = bool (*)(Mutex*);
using CondFn = void (*)(Mutex*, const Condition&);
using CondTimeoutFn = bool (*)(Mutex*, const Condition&, Duration);
using CondDeadlineFn = bool (*)(Mutex*, const Condition&, Time);

Mutex::~Mutex() {
  static const auto real = RealFn<MutexFn>("5MutexD1Ev");
  if (const Outermost outer; outer) __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  static const auto real = RealFn<MutexFn>("5Mutex4LockEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  static const auto real = RealFn<MutexFn>("5Mutex10ReaderLockEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::TryLock() {
  static const auto real = RealFn<MutexTryFn>("5Mutex7TryLockEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto real = RealFn<MutexTryFn>("5Mutex13ReaderTryLockEv");
  const Outermost outer;
  if (!outer) return real(this);
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::Unlock() {
  static const auto real = RealFn<MutexFn>("5Mutex6UnlockEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  static const auto real = RealFn<MutexFn>("5Mutex12ReaderUnlockEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = RealFn<CondFn>("5Mutex8LockWhenERKNS0_9ConditionE");
  const Outermost outer;
  if (!outer) return real(this, cond);
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = RealFn<CondFn>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  const Outermost outer;
  if (!outer) return real(this, cond);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this, cond);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real =
      RealFn<CondTimeoutFn>("5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (!outer) return real(this, cond, timeout);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real =
      RealFn<CondDeadlineFn>("5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (!outer) return real(this, cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = RealFn<CondTimeoutFn>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (!outer) return real(this, cond, timeout);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = RealFn<CondDeadlineFn>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (!outer) return real(this, cond, deadline);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

void Mutex::Await(const Condition& cond) {
  static const auto real = RealFn<CondFn>("5Mutex5AwaitERKNS0_9ConditionE");
  const Outermost outer;
  if (!outer) return real(this, cond);
  WaitUnlock(this);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real =
      RealFn<CondTimeoutFn>("5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (!outer) return real(this, cond, timeout);
  WaitUnlock(this);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real =
      RealFn<CondDeadlineFn>("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (!outer) return real(this, cond, deadline);
  WaitUnlock(this);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = RealFn<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  const Outermost outer;
  if (!outer) return real(this, mu);
  WaitUnlock(mu);
  real(this, mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto real = RealFn<bool (*)(CondVar*, Mutex*, Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  const Outermost outer;
  if (!outer) return real(this, mu, timeout);
  WaitUnlock(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_mutex_post_lock(mu, 0, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real = RealFn<bool (*)(CondVar*, Mutex*, Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  const Outermost outer;
  if (!outer) return real(this, mu, deadline);
  WaitUnlock(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_mutex_post_lock(mu, 0, 0);
  return timed_out;
}

void Notification::Notify() {
  static const auto real = RealFn<void (*)(Notification*)>("12Notification6NotifyEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  static const auto real =
      RealFn<void (*)(const Notification*)>("12Notification19WaitForNotificationEv", true);
  const Outermost outer;
  if (!outer) return real(this);
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static const auto real = RealFn<bool (*)(const Notification*, Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  const Outermost outer;
  if (!outer) return real(this, timeout);
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static const auto real = RealFn<bool (*)(const Notification*, Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  const Outermost outer;
  if (!outer) return real(this, deadline);
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool BlockingCounter::DecrementCount() {
  static const auto real = RealFn<bool (*)(BlockingCounter*)>("15BlockingCounter14DecrementCountEv");
  const Outermost outer;
  if (!outer) return real(this);
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  static const auto real = RealFn<void (*)(BlockingCounter*)>("15BlockingCounter4WaitEv");
  const Outermost outer;
  if (!outer) return real(this);
  real(this);
  __tsan_acquire(this);
}

// Every holder's release happens before the delete by whichever holder drops the count to 0.
void Status::UnrefNonInlined(uintptr_t rep) {
  static const auto real = RealFn<void (*)(uintptr_t)>("6Status15UnrefNonInlinedEm");
  void* const payload = reinterpret_cast<void*>(rep);
  __tsan_release(payload);
  __tsan_acquire(payload);
  real(rep);
}

ABSL_NAMESPACE_END
}  // namespace absl
