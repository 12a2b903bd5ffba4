/*
 * durable_create: measure how many small files per second this disk can
 * create durably, the way a write-once archive server has to:
 *
 *   open(tmp, O_CREAT|O_EXCL) -> write 4 KiB -> fsync -> close
 *   -> rename(tmp, final) -> fsync(directory)
 *
 * N writer threads run in parallel in one shared directory for a fixed time.
 * With "nosync" the two fsync calls are skipped (page-cache create rate).
 *
 * Usage: durable_create DIR THREADS SECONDS [sync|nosync] [SIZE]
 * Prints one line: "creates=<n> seconds=<s> rate=<n/s> threads=<t> mode=<m> size=<b>"
 *
 * Compiled at run time by bench/run (gcc -O2 -pthread).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int do_sync = 1;
static size_t size = 4096;
static atomic_int stop_flag;
static atomic_long total;
static atomic_int failed;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "durable_create: %s %s: %s\n", what, path ? path : "", strerror(errno));
    atomic_store(&failed, 1);
    atomic_store(&stop_flag, 1);
}

static void *writer(void *arg) {
    long tid = (long)arg;
    char tmp[4096], fin[4096];
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        die("malloc", NULL);
        return NULL;
    }
    for (size_t i = 0; i < size; i++)
        buf[i] = (char)(i * 31 + tid);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        die("open dir", dir);
        free(buf);
        return NULL;
    }
    long n = 0;
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        snprintf(tmp, sizeof tmp, "%s/.tmp-%ld-%ld", dir, tid, n);
        snprintf(fin, sizeof fin, "%s/%ld-%ld", dir, tid, n);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) { die("open", tmp); break; }
        size_t off = 0;
        while (off < size) {
            ssize_t w = write(fd, buf + off, size - off);
            if (w < 0) {
                if (errno == EINTR) continue;
                die("write", tmp);
                break;
            }
            off += (size_t)w;
        }
        if (do_sync && fsync(fd) != 0) { die("fsync", tmp); close(fd); break; }
        if (close(fd) != 0) { die("close", tmp); break; }
        if (rename(tmp, fin) != 0) { die("rename", fin); break; }
        if (do_sync && fsync(dfd) != 0) { die("fsync dir", dir); break; }
        n++;
        atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
    }
    close(dfd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR THREADS SECONDS [sync|nosync] [SIZE]\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    int threads = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (argc > 4 && strcmp(argv[4], "nosync") == 0) do_sync = 0;
    if (argc > 5) size = (size_t)strtoull(argv[5], NULL, 10);
    if (threads < 1 || seconds <= 0) {
        fprintf(stderr, "durable_create: bad THREADS or SECONDS\n");
        return 2;
    }
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    if (!t) return 1;
    double start = now();
    for (long i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, writer, (void *)i) != 0) {
            fprintf(stderr, "durable_create: pthread_create failed\n");
            return 1;
        }
    }
    while (!atomic_load(&stop_flag) && now() - start < seconds)
        usleep(10000);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double elapsed = now() - start;
    long n = atomic_load(&total);
    printf("creates=%ld seconds=%.3f rate=%.1f threads=%d mode=%s size=%zu\n", n, elapsed,
           (double)n / elapsed, threads, do_sync ? "sync" : "nosync", size);
    free(t);
    return atomic_load(&failed) ? 1 : 0;
}
