/*
 * Differential-test harness with paging in the picture: runs short programs
 * (one or more x86-64 instructions) natively, in a fixed layout of pages that
 * bzemu maps with its own page tables (test/diff/paged-emulator.ts), so page
 * boundaries, read-only and absent pages, a second mapping of a code page and
 * the stack are where the program can reach them.
 *
 * Built by test/diff/paged-native.ts with `gcc -O1`. Binary protocol on
 * stdin/stdout (little endian; mirrored in paged-native.ts):
 *
 *   output header: u64 MAGIC
 *   case in:  u8 flags (bit 0: DATA0 read-only), u8 nWin, u16 codeOff, u16 codeLen,
 *             u16 reserved, u64 regs[16], u64 rflags, u8 code[codeLen],
 *             nWin x { u16 off, u16 len, u8 bytes[len] }   (offsets from DATA)
 *   case out: u64 regs[16], u64 rip, u64 rflags, i32 vector (-1 none),
 *             u32 errorCode, u64 cr2, u8 code[codeLen] (after the run),
 *             nWin x u8 bytes[len], u32 nOutside, u32 outside[min(nOutside,16)]
 *             (outside: offset << 8 | byte, nonzero data bytes outside the windows)
 *
 * Layout (fixed; all below 4 GiB so absolute disp32 operands reach it):
 *   STATE  0x1e0000   register slots, entry/exit addresses, host RSP
 *   STUB   0x1f0000   prologue (loads every register, RSP last, jumps to the
 *                     program) and epilogue (stores every register, then flags)
 *   CODE   0x3fff0000 two pages of one memfd (RWX); the program goes at codeOff,
 *                     followed by `jmp [S_EXIT]` back to the epilogue
 *          0x3fff2000 two absent pages
 *   ALIAS  0x3fff4000 the first code page again (same memfd page)
 *   (bzemu alone maps a page at 0x3fe00000 for its GDT)
 *   DATA   0x3fffa000 six pages of one memfd; the first is read-only when the
 *                     case says so (only then does the emulator map it read-only)
 *          0x40000000 absent (the 1 GiB boundary)
 *   DATA_RW 0x50000000 the data pages again, writable: the harness fills and
 *                     reads them here
 * Everything the program may not reach is absent. The program runs at CPL 3,
 * bzemu at CPL 0 with CR0.WP: page-fault error codes differ in the U bit only.
 * Faults are caught with sigsetjmp/siglongjmp on an alternate signal stack (the
 * program's RSP points into DATA); the state at the fault, the trap number,
 * the error code and CR2 come from the signal context.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "harness-emit.h"

#define MAGIC 0x3147504646494450ULL /* "PDIFFPG1" */
#define STATE 0x1e0000UL
#define STUB 0x1f0000UL
#define EPILOGUE (STUB + 0x800)
#define CODE 0x3fff0000UL
#define CODE_SIZE 0x2000UL
#define ALIAS 0x3fff4000UL
#define DATA 0x3fffa000UL
#define DATA_SIZE 0x6000UL
#define DATA_RW 0x50000000UL
#define MAX_OUTSIDE 16
#define MAX_WIN 8

#define S_REGS (STATE + 0x000)      /* 16 x u64, in and out */
#define S_FLAGS_IN (STATE + 0x080)  /* u64 */
#define S_FLAGS_OUT (STATE + 0x088) /* u64 */
#define S_HOST_RSP (STATE + 0x090)  /* u64 */
#define S_ENTRY (STATE + 0x098)     /* u64: where the prologue jumps */
#define S_EXIT (STATE + 0x0a0)      /* u64: the epilogue */

static sigjmp_buf fault_jmp;
static volatile int fault_vector;
static uint64_t fault_regs[16], fault_rip, fault_flags, fault_err, fault_cr2;

static void *map_at(unsigned long addr, size_t len, int prot, int flags, int fd, off_t off) {
  void *p = mmap((void *)addr, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
  if (p == MAP_FAILED || p != (void *)addr) die("mmap");
  return p;
}

static int memfd(const char *name, size_t size) {
  int fd = memfd_create(name, 0);
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0) die("memfd");
  return fd;
}

/* jmp qword [abs32]: 7 bytes. */
static uint8_t *jmp_abs(uint8_t *p, unsigned long slot) {
  static const uint8_t op[] = {0xff, 0x24, 0x25};
  p = emit(p, op, 3);
  return emit32(p, (uint32_t)slot);
}

static void build_stub(uint8_t *stub) {
  uint8_t *p = stub;
  static const uint8_t saves[] = {0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57};
  p = emit(p, saves, sizeof saves);
  p = mov_abs(p, 4, 0, S_HOST_RSP);
  static const uint8_t push_abs[] = {0xff, 0x34, 0x25};
  p = emit(p, push_abs, 3);
  p = emit32(p, (uint32_t)S_FLAGS_IN);
  *p++ = 0x9d; /* popfq, on the host stack */
  for (int r = 0; r < 16; r++)
    if (r != 4) p = mov_abs(p, r, 1, S_REGS + 8 * r);
  p = mov_abs(p, 4, 1, S_REGS + 8 * 4); /* the program's RSP last */
  jmp_abs(p, S_ENTRY);

  p = stub + (EPILOGUE - STUB);
  for (int r = 0; r < 16; r++) p = mov_abs(p, r, 0, S_REGS + 8 * r);
  p = mov_abs(p, 4, 1, S_HOST_RSP); /* flags are saved on the host stack, not the program's */
  *p++ = 0x9c;                      /* pushfq */
  static const uint8_t pop_abs[] = {0x8f, 0x04, 0x25};
  p = emit(p, pop_abs, 3);
  p = emit32(p, (uint32_t)S_FLAGS_OUT);
  *p++ = 0xfc; /* cld */
  static const uint8_t restores[] = {0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3};
  emit(p, restores, sizeof restores);
}

static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void on_fault(int sig, siginfo_t *info, void *ctx) {
  ucontext_t *uc = ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  uintptr_t rip = (uintptr_t)g[REG_RIP];
  if (rip >= STUB && rip < STUB + 4096) {
    /* A fault in the harness's own code: give up loudly. */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(3);
  }
  for (int r = 0; r < 16; r++) fault_regs[r] = (uint64_t)g[greg_of[r]];
  fault_rip = rip;
  fault_flags = (uint64_t)g[REG_EFL];
  fault_vector = (int)g[REG_TRAPNO];
  fault_err = (uint64_t)g[REG_ERR];
  fault_cr2 = fault_vector == 14 ? (uint64_t)(uintptr_t)info->si_addr : 0;
  siglongjmp(fault_jmp, 1);
}

static void read_exact(void *buf, size_t n) {
  if (n && fread(buf, 1, n, stdin) != n) die("short read");
}

int main(void) {
  map_at(STATE, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *stub = map_at(STUB, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int code_fd = memfd("bzemu-code", CODE_SIZE);
  uint8_t *code = map_at(CODE, CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, code_fd, 0);
  map_at(CODE + CODE_SIZE, 0x2000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  map_at(ALIAS, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, code_fd, 0);
  map_at(ALIAS + 4096, DATA - ALIAS - 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int data_fd = memfd("bzemu-data", DATA_SIZE);
  map_at(DATA, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
  map_at(DATA + DATA_SIZE, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *data = map_at(DATA_RW, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
  build_stub(stub);
  *(uint64_t *)S_EXIT = EPILOGUE;

  static uint8_t altstack[1 << 16];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  catch_faults(on_fault, SA_ONSTACK);
  buffer_stdio();
  uint64_t magic = MAGIC;
  fwrite(&magic, 8, 1, stdout);

  uint64_t *regs = (uint64_t *)S_REGS;
  void (*enter)(void) = (void (*)(void))STUB;
  int ro = 0;
  uint8_t hdr[8];
  while (fread(hdr, 1, 8, stdin) == 8) {
    int want_ro = hdr[0] & 1;
    unsigned n_win = hdr[1];
    unsigned code_off = hdr[2] | hdr[3] << 8, code_len = hdr[4] | hdr[5] << 8;
    uint64_t in_regs[16], flags;
    read_exact(in_regs, sizeof in_regs);
    read_exact(&flags, 8);
    if (n_win > MAX_WIN || code_off + code_len > CODE_SIZE) {
      fprintf(stderr, "bad case\n");
      return 2;
    }
    read_exact(code + code_off, code_len);
    /* A program that runs to the end of the code area has no way back: it must fault. */
    int has_exit = code_off + code_len + 7 <= CODE_SIZE;
    if (has_exit) jmp_abs(code + code_off + code_len, S_EXIT);
    uint16_t win_off[MAX_WIN], win_len[MAX_WIN];
    for (unsigned w = 0; w < n_win; w++) {
      read_exact(&win_off[w], 2);
      read_exact(&win_len[w], 2);
      if ((size_t)win_off[w] + win_len[w] > DATA_SIZE) {
        fprintf(stderr, "bad window\n");
        return 2;
      }
      read_exact(data + win_off[w], win_len[w]);
    }
    if (want_ro != ro) {
      if (mprotect((void *)DATA, 4096, want_ro ? PROT_READ : PROT_READ | PROT_WRITE) != 0) die("mprotect");
      ro = want_ro;
    }
    /* Make the read-only page's entry present, so a write to it faults with P=1 as under bzemu's tables. */
    (void)*(volatile uint8_t *)DATA;

    memcpy(regs, in_regs, sizeof in_regs);
    *(uint64_t *)S_FLAGS_IN = flags;
    *(uint64_t *)S_ENTRY = CODE + code_off;

    int32_t vector = -1;
    uint64_t out_flags, rip, err, cr2;
    if (sigsetjmp(fault_jmp, 0) == 0) {
      enter();
      err = 0;
      cr2 = 0;
      out_flags = *(uint64_t *)S_FLAGS_OUT;
      rip = CODE + code_off + code_len;
    } else {
      vector = fault_vector;
      memcpy(regs, fault_regs, sizeof fault_regs);
      out_flags = fault_flags;
      rip = fault_rip;
      err = fault_err;
      cr2 = fault_cr2;
      __asm__ volatile("cld");
    }
    uint32_t err32 = (uint32_t)err;

    fwrite(regs, 8, 16, stdout);
    fwrite(&rip, 8, 1, stdout);
    fwrite(&out_flags, 8, 1, stdout);
    fwrite(&vector, 4, 1, stdout);
    fwrite(&err32, 4, 1, stdout);
    fwrite(&cr2, 8, 1, stdout);
    fwrite(code + code_off, 1, code_len, stdout);
    memset(code + code_off, 0, code_len + (has_exit ? 7 : 0));
    for (unsigned w = 0; w < n_win; w++) {
      fwrite(data + win_off[w], 1, win_len[w], stdout);
      memset(data + win_off[w], 0, win_len[w]);
    }
    /* Nonzero data bytes outside the windows (already zeroed): report and clear them. */
    uint32_t outside[MAX_OUTSIDE];
    uint32_t n_outside = 0;
    uint64_t *words = (uint64_t *)data;
    for (size_t w = 0; w < DATA_SIZE / 8; w++) {
      if (words[w] == 0) continue;
      for (size_t b = 0; b < 8; b++) {
        size_t off = w * 8 + b;
        uint8_t v = data[off];
        if (v == 0) continue;
        if (n_outside < MAX_OUTSIDE) outside[n_outside] = (uint32_t)(off << 8 | v);
        n_outside++;
        data[off] = 0;
      }
    }
    fwrite(&n_outside, 4, 1, stdout);
    fwrite(outside, 4, n_outside < MAX_OUTSIDE ? n_outside : MAX_OUTSIDE, stdout);
  }
  fflush(stdout);
  return 0;
}
