/*
 * Shared by the differential-test harnesses (harness.c, paged-harness.c):
 * dying loudly, emitting the few x86-64 encodings their stubs are built of,
 * catching the faults of the code under test, and buffering stdio.
 */
#ifndef BZEMU_HARNESS_EMIT_H
#define BZEMU_HARNESS_EMIT_H
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *msg) {
  perror(msg);
  exit(2);
}

static uint8_t *emit(uint8_t *p, const uint8_t *bytes, size_t n) {
  memcpy(p, bytes, n);
  return p + n;
}

static uint8_t *emit32(uint8_t *p, uint32_t v) {
  memcpy(p, &v, 4);
  return p + 4;
}

/* mov r64, [abs32] (load=1) or mov [abs32], r64 (load=0); always 8 bytes. */
static uint8_t *mov_abs(uint8_t *p, int reg, int load, unsigned long addr) {
  *p++ = 0x48 | (reg >= 8 ? 4 : 0);
  *p++ = load ? 0x8b : 0x89;
  *p++ = 0x04 | ((reg & 7) << 3);
  *p++ = 0x25;
  return emit32(p, (uint32_t)addr);
}
/* Catch every signal an instruction under test can raise with `handler` (extra_flags: e.g. SA_ONSTACK). */
static void catch_faults(void (*handler)(int, siginfo_t *, void *), int extra_flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | extra_flags;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGFPE, SIGSEGV, SIGILL, SIGBUS, SIGTRAP};
  for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++)
    if (sigaction(sigs[k], &sa, NULL) != 0) die("sigaction");
}

/* Large stdio buffers: cases stream in and results out in bulk. */
static void buffer_stdio(void) {
  static char inbuf[1 << 16], outbuf[1 << 16];
  setvbuf(stdin, inbuf, _IOFBF, sizeof inbuf);
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
}
#endif
