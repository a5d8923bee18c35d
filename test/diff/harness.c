/*
 * Differential-test harness: runs single x86-64 instructions natively.
 *
 * Built by test/diff/native.ts with `gcc -O1` into a temporary directory.
 * Reads test cases from stdin and writes results to stdout (binary, little
 * endian; the layout is mirrored in native.ts):
 *
 *   output header: u64 address of the instruction under test
 *   case in:  u8 len, u8 code[15], u64 regs[16], u64 rflags,
 *             u16 winOff, u16 winLen, u32 reserved, u8 window[winLen]
 *   case out: u64 regs[16], u64 rflags, i32 fault (-1 none, else vector),
 *             u32 nOutside, u8 window[winLen], u32 outside[min(nOutside,16)]
 *             (outside entries: offset << 8 | byte, nonzero scratch bytes
 *             outside the window)
 *
 * Fixed low mappings (all reachable through absolute [disp32] operands):
 *   STATE   0x1e0000  register/flags slots and the saved host RSP
 *   CODE    0x1f0000  RWX stub: prologue, instruction under test, epilogue
 *   SCRATCH 0x100000  64 KiB data area; memory operands point here
 *
 * With the argument `compat` the instruction runs in compatibility mode (32-bit
 * code, CS 0x23): the 64-bit prologue also loads RSP from the case and
 * far-jumps to it, a 32-bit epilogue stores EAX..EDI (ESP included) and
 * EFLAGS and far-jumps back to 64-bit code. Only the low halves of the first
 * eight registers mean anything then.
 *
 * Faults (#DE, #UD, #GP, #PF, ...) are caught with sigsetjmp/siglongjmp; the
 * vector comes from the trap number in the signal context, and registers
 * and flags at the fault from the context too.
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

#define STATE 0x1e0000UL
#define CODE 0x1f0000UL
#define SCRATCH 0x100000UL
#define SCRATCH_SIZE 0x10000UL
#define MAX_OUTSIDE 16

/* State page layout. */
#define S_REGS (STATE + 0x000)      /* 16 x u64, in and out */
#define S_FLAGS_IN (STATE + 0x080)  /* u64 */
#define S_FLAGS_OUT (STATE + 0x088) /* u64 */
#define S_HOST_RSP (STATE + 0x090)  /* u64 */
#define S_FAR_IN (STATE + 0x0a0)    /* m16:32 to the instruction in compatibility mode */
#define S_FAR_OUT (STATE + 0x0a8)   /* m16:32 back to 64-bit code */
#define S_STACK32 (STATE + 0xf00)   /* the 32-bit epilogue's own stack (for PUSHFD) */
#define RESUME64 (CODE + 0xe00)     /* 64-bit code the compat epilogue returns to */
#define USER32_CS 0x23
#define USER64_CS 0x33

static int compat;

static uint8_t *code_page;
static size_t insn_offset;
static sigjmp_buf fault_jmp;
static volatile int fault_vector;
static uint64_t fault_regs[16];
static uint64_t fault_flags;

static void *map_fixed(unsigned long addr, size_t len, int prot) {
  void *p = mmap((void *)addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED || p != (void *)addr) die("mmap");
  return p;
}

static void build_prologue(void) {
  uint8_t *p = code_page;
  static const uint8_t saves[] = {0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57};
  p = emit(p, saves, sizeof saves);
  p = mov_abs(p, 4, 0, S_HOST_RSP); /* mov [host_rsp], rsp */
  if (compat) {
    /* 64-bit processes run with null DS and ES, which 32-bit code cannot address through: load the flat user data segment. */
    static const uint8_t flat_ds[] = {0xb8, 0x2b, 0x00, 0x00, 0x00, 0x8e, 0xd8, 0x8e, 0xc0}; /* mov eax, 0x2b; mov ds, eax; mov es, eax */
    p = emit(p, flat_ds, sizeof flat_ds);
  }
  static const uint8_t push_abs[] = {0xff, 0x34, 0x25};
  p = emit(p, push_abs, 3);
  p = emit32(p, (uint32_t)S_FLAGS_IN);
  *p++ = 0x9d; /* popfq */
  for (int r = 0; r < 16; r++)
    if (r != 4) p = mov_abs(p, r, 1, S_REGS + 8 * r);
  if (compat) {
    p = mov_abs(p, 4, 1, S_REGS + 8 * 4);
    static const uint8_t ljmp_abs[] = {0xff, 0x2c, 0x25}; /* jmp far [abs32] (m16:32) */
    p = emit(p, ljmp_abs, 3);
    p = emit32(p, (uint32_t)S_FAR_IN);
  }
  insn_offset = (size_t)(p - code_page);
  if (compat) {
    /* Back in 64-bit mode: the host stack and the saved registers, as the 64-bit epilogue ends. */
    uint8_t *q = code_page + (RESUME64 - CODE);
    q = mov_abs(q, 4, 1, S_HOST_RSP);
    *q++ = 0xfc; /* cld */
    static const uint8_t restores[] = {0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3};
    emit(q, restores, sizeof restores);
    uint32_t *far_in = (uint32_t *)S_FAR_IN, *far_out = (uint32_t *)S_FAR_OUT;
    far_in[0] = (uint32_t)(CODE + insn_offset);
    far_in[1] = USER32_CS;
    far_out[0] = (uint32_t)RESUME64;
    far_out[1] = USER64_CS;
  }
}

/* 32-bit code after the instruction: store EAX..EDI and EFLAGS, then far-jump to RESUME64. */
static void build_epilogue32(uint8_t *p) {
  for (int r = 0; r < 8; r++) {
    *p++ = 0x89; /* mov [abs32], r32 */
    *p++ = (uint8_t)(0x05 | (r << 3));
    p = emit32(p, (uint32_t)(S_REGS + 8 * r));
  }
  *p++ = 0xbc; /* mov esp, imm32 */
  p = emit32(p, (uint32_t)S_STACK32);
  *p++ = 0x9c; /* pushfd */
  *p++ = 0x8f; /* pop [abs32] */
  *p++ = 0x05;
  p = emit32(p, (uint32_t)S_FLAGS_OUT);
  *p++ = 0xff; /* jmp far [abs32] */
  *p++ = 0x2d;
  emit32(p, (uint32_t)S_FAR_OUT);
}

static void build_epilogue(uint8_t *p) {
  for (int r = 0; r < 16; r++)
    if (r != 4) p = mov_abs(p, r, 0, S_REGS + 8 * r);
  *p++ = 0x9c; /* pushfq */
  static const uint8_t pop_abs[] = {0x8f, 0x04, 0x25};
  p = emit(p, pop_abs, 3);
  p = emit32(p, (uint32_t)S_FLAGS_OUT);
  p = mov_abs(p, 4, 1, S_HOST_RSP); /* mov rsp, [host_rsp] */
  *p++ = 0xfc; /* cld */
  static const uint8_t restores[] = {0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3};
  emit(p, restores, sizeof restores);
}

static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void on_fault(int sig, siginfo_t *info, void *ctx) {
  (void)info;
  ucontext_t *uc = ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  uintptr_t rip = (uintptr_t)g[REG_RIP];
  if (rip < CODE || rip >= CODE + 4096) {
    /* A fault in the harness itself: give up loudly. */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(3);
  }
  for (int r = 0; r < 16; r++) fault_regs[r] = (uint64_t)g[greg_of[r]];
  fault_flags = (uint64_t)g[REG_EFL];
  fault_vector = (int)g[REG_TRAPNO];
  siglongjmp(fault_jmp, 1);
}

static void read_exact(void *buf, size_t n) {
  if (n && fread(buf, 1, n, stdin) != n) die("short read");
}

int main(int argc, char **argv) {
  compat = argc > 1 && strcmp(argv[1], "compat") == 0;
  map_fixed(STATE, 4096, PROT_READ | PROT_WRITE);
  code_page = map_fixed(CODE, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
  uint8_t *scratch = map_fixed(SCRATCH, SCRATCH_SIZE, PROT_READ | PROT_WRITE);
  build_prologue();

  catch_faults(on_fault, 0);
  buffer_stdio();

  uint64_t insn_addr = CODE + insn_offset;
  fwrite(&insn_addr, 8, 1, stdout);

  uint64_t *regs = (uint64_t *)S_REGS;
  void (*stub)(void) = (void (*)(void))CODE;
  uint8_t len;
  while (fread(&len, 1, 1, stdin) == 1) {
    uint8_t code[15];
    uint64_t in_regs[16], flags;
    uint16_t win_off, win_len;
    uint32_t reserved;
    read_exact(code, 15);
    read_exact(in_regs, sizeof in_regs);
    read_exact(&flags, 8);
    read_exact(&win_off, 2);
    read_exact(&win_len, 2);
    read_exact(&reserved, 4);
    if (len > 15 || (size_t)win_off + win_len > SCRATCH_SIZE) {
      fprintf(stderr, "bad case\n");
      return 2;
    }
    read_exact(scratch + win_off, win_len);

    memcpy(code_page + insn_offset, code, len);
    if (compat) build_epilogue32(code_page + insn_offset + len);
    else build_epilogue(code_page + insn_offset + len);
    memcpy(regs, in_regs, sizeof in_regs);
    *(uint64_t *)S_FLAGS_IN = flags;

    int32_t fault = -1;
    uint64_t out_flags;
    if (sigsetjmp(fault_jmp, 0) == 0) {
      stub();
      out_flags = *(uint64_t *)S_FLAGS_OUT;
    } else {
      fault = fault_vector;
      memcpy(regs, fault_regs, sizeof fault_regs);
      out_flags = fault_flags;
      __asm__ volatile("cld");
    }
    if (!compat) regs[4] = in_regs[4];

    /* Nonzero scratch bytes outside the window; zero them for the next case. */
    uint32_t outside[MAX_OUTSIDE];
    uint32_t n_outside = 0;
    uint64_t *words = (uint64_t *)scratch;
    for (size_t w = 0; w < SCRATCH_SIZE / 8; w++) {
      if (words[w] == 0) continue;
      for (size_t b = 0; b < 8; b++) {
        size_t off = w * 8 + b;
        uint8_t v = scratch[off];
        if (v == 0 || (off >= win_off && off < (size_t)win_off + win_len)) continue;
        if (n_outside < MAX_OUTSIDE) outside[n_outside] = (uint32_t)(off << 8 | v);
        n_outside++;
        scratch[off] = 0;
      }
    }

    fwrite(regs, 8, 16, stdout);
    fwrite(&out_flags, 8, 1, stdout);
    fwrite(&fault, 4, 1, stdout);
    fwrite(&n_outside, 4, 1, stdout);
    fwrite(scratch + win_off, 1, win_len, stdout);
    fwrite(outside, 4, n_outside < MAX_OUTSIDE ? n_outside : MAX_OUTSIDE, stdout);
    memset(scratch + win_off, 0, win_len);
  }
  fflush(stdout);
  return 0;
}
