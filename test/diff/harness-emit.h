/*
 * Shared by the differential-test harnesses (harness.c, paged-harness.c):
 * dying loudly and emitting the few x86-64 encodings their stubs are built of.
 */
#ifndef BZEMU_HARNESS_EMIT_H
#define BZEMU_HARNESS_EMIT_H
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
#endif
