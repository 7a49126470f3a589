/* A process whose wall clock is WORKFLOWS_CLOCK_SHIFT_SEC seconds off, and nothing else: an
 * LD_PRELOAD library for the clock-skew tests. Only CLOCK_REALTIME (and gettimeofday, time) moves;
 * the monotonic clock and every wait on it stay true. Debian's libfaketime 0.9.10 was tried
 * first: asked to leave the monotonic clock alone it makes Python's time.sleep fail (EINVAL), and
 * faking it too hangs threading.Event.wait. Built by tests/conftest.py with the machine's gcc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift_ns(void) {
    static long long cached = -1;
    static int known = 0;
    if (!known) {
        const char *v = getenv("WORKFLOWS_CLOCK_SHIFT_SEC");
        cached = v ? (long long)(atof(v) * 1e9) : 0;
        known = 1;
    }
    return cached;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = 0;
    if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + shift_ns();
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
