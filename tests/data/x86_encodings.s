# Encodings for tests/test_x86.py, the ones a length decoder gets wrong: every immediate size, moffs,
# group-3 test, ModRM/SIB/displacement forms, 0F 38/0F 3A/3DNow!/SSE4a, VEX, EVEX (AVX-512, FP16), XOP,
# prefixes. `as` assembles them and objdump says where each starts.
.text
start:
 movabs $0x1122334455667788, %rax
 movabs $0x1122334455667788, %r11
 mov $0x11223344, %eax
 mov $0x1122, %ax
 mov $0x11, %r9b
 movabs 0x1122334455667788, %eax
 movabs %al, 0x1122334455667788
 movabs 0x1122334455667788, %rax
 movabs %ax, 0x1122334455667788
 addr32 movabs 0x11223344, %eax
 testb $1, (%rax)
 testw $0x1234, (%rax)
 testl $1, 8(%rax,%rbx,4)
 testq $-1, 0x100(%rip)
 test $0x12, %al
 test $0x1234, %ax
 test $0x12345678, %eax
 test $0x12345678, %rax
 .byte 0xf6, 0xc8, 0x01
 .byte 0x66, 0xf7, 0xc8, 0x01, 0x02
 notb (%rax)
 negl %eax
 mull %ecx
 idivq 0x100(%rsp)
 divw 0x12345678(,%rcx,2)
 enter $16, $1
 ret $8
 lretq $8
 lretq
 push $1
 push $0x1000
 pushw $0x1000
 imul $0x1000, %eax, %ecx
 imul $0x1000, %ax, %cx
 imul $3, %eax, %ecx
 addw $0x1000, %ax
 addw $0x1000, (%rax)
 addw $1, (%rax)
 addq $0x1000, (%rax)
 and $0x7f, %al
 or $0x1234, %ax
 sub $0x12345678, %rax
 movw $0x1234, (%rax)
 movw $0x1234, 0x10(%rbp,%r12,8)
 movq $-1, 0x12345678(%rip)
 movb $1, 0x12345678(,%rax,8)
 mov 0x12345678, %eax
 lea 0(%rbp), %rax
 lea (%r13), %rax
 lea (%r12), %rax
 lea (%rsp), %rax
 lea 0x80(%rsp), %rax
 call far
 jmp far
 jmp start
 je far
 jne start
 jrcxz 1f
 jecxz 1f
 loop 1f
1:
 call *%rax
 call *0x10(%rax)
 jmp *0x12345678(,%rax,8)
 notrack jmp *%rax
 bnd jmp far
 bnd ret
 mov %cr0, %rax
 mov %rax, %cr3
 mov %db7, %rax
 .byte 0x0f, 0x20, 0x00
 xbegin start
 xabort $1
 xend
 extrq $1, $2, %xmm0
 insertq $1, $2, %xmm1, %xmm0
 extrq %xmm1, %xmm0
 insertq %xmm1, %xmm0
 vmread %rax, %rcx
 pfadd %mm1, %mm0
 pfmul 0x10(%rax), %mm0
 femms
 pshufw $1, %mm0, %mm1
 psrlw $1, %mm0
 pshufd $1, %xmm0, %xmm1
 psrldq $4, %xmm0
 palignr $1, %xmm0, %xmm1
 pshufb %xmm0, %xmm1
 pshufb 0x10(%rax,%rbx,2), %xmm9
 crc32b %al, %ecx
 crc32q (%rax), %rcx
 popcnt %eax, %ecx
 lzcnt %rax, %rcx
 tzcnt %ax, %cx
 shld $1, %eax, %ecx
 shld %cl, %eax, %ecx
 shrd $1, %ax, (%rbx)
 bt $1, %eax
 btsw $1, (%rax)
 cmpps $1, %xmm0, %xmm1
 cmpsd $1, %xmm0, %xmm1
 pinsrw $1, %eax, %xmm0
 pextrw $1, %xmm0, %eax
 shufps $1, %xmm0, %xmm1
 roundsd $1, %xmm0, %xmm1
 pclmulqdq $1, %xmm0, %xmm1
 aesenc %xmm0, %xmm1
 sha256rnds2 %xmm0, %xmm1
 sha1rnds4 $1, %xmm0, %xmm1
 movbe (%rax), %ecx
 movq %mm0, %rax
 movq %xmm0, %rax
 cvtsi2sdq %rax, %xmm0
 cmpxchg16b (%rax)
 rdrand %eax
 rdseed %r11
 xgetbv
 syscall
 cpuid
 rdtsc
 rdtscp
 bswap %r12
 ud2
 ud1 %eax, %ecx
 ud0 (%rax), %ecx
 endbr64
 endbr32
 rdsspq %rax
 lfence
 mfence
 sfence
 clflush (%rax)
 prefetcht0 (%rax)
 prefetchw (%rax)
 nop
 xchg %ax, %ax
 nopl (%rax)
 nopl 0(%rax)
 nopl 0(%rax,%rax,1)
 nopw 0(%rax,%rax,1)
 nopl 0x10000(%rax)
 nopl 0x10000(%rax,%rax,1)
 nopw %cs:0x10000(%rax,%rax,1)
 .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0
 .byte 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0
 vzeroupper
 vzeroall
 vpshufd $1, %ymm0, %ymm1
 vpshufd $1, %ymm8, %ymm9
 vpermq $1, %ymm0, %ymm1
 vpsrlq $1, %ymm0, %ymm1
 vcmpps $1, %ymm0, %ymm1, %ymm2
 vpinsrw $1, %eax, %xmm0, %xmm1
 vpextrw $1, %xmm0, %eax
 vshufps $1, %ymm0, %ymm1, %ymm2
 vfmadd231ps %ymm0, %ymm1, %ymm2
 vfmadd231ps 0x100(%rax,%rbx,4), %ymm11, %ymm12
 vpgatherdd %ymm0, (%rax,%ymm1,4), %ymm2
 vmovdqu 0x100(%rax), %ymm0
 vmovdqu 0x100(%r8), %ymm8
 vmovq %xmm0, %rax
 vinserti128 $1, %xmm0, %ymm1, %ymm2
 vblendvps %ymm0, %ymm1, %ymm2, %ymm3
 vbroadcastss (%rax), %ymm0
 andn %rax, %rbx, %rcx
 rorx $3, %rax, %rbx
 pdep %rax, %rbx, %rcx
 bzhi %rax, %rbx, %rcx
 shlx %rax, %rbx, %rcx
 mulx %rax, %rbx, %rcx
 kmovw %k1, %eax
 kmovq %k1, %k2
 kortestw %k1, %k2
 vpternlogd $0xff, %zmm0, %zmm1, %zmm2
 vmovdqu64 0x40(%rax), %zmm0
 vmovdqu64 0x44(%rax), %zmm0
 vmovdqu8 (%rsi), %zmm1{%k1}{z}
 vpshufd $1, %zmm0, %zmm1
 vpsrlq $1, %zmm0, %zmm1
 vcmpps $1, %zmm0, %zmm1, %k1
 vpcmpub $1, %zmm0, %zmm1, %k1
 vaddps (%rax){1to16}, %zmm1, %zmm2
 vaddps {rn-sae}, %zmm0, %zmm1, %zmm2
 vpgatherdd (%rax,%zmm1,4), %zmm0{%k1}
 vscatterdps %zmm0, (%rax,%zmm1,4){%k1}
 vcvtps2ph $1, %zmm0, (%rax)
 vpermt2d %zmm0, %zmm1, %zmm2
 vextracti64x4 $1, %zmm0, %ymm1
 vinserti32x4 $1, %xmm0, %zmm1, %zmm2
 vpbroadcastb (%rdi,%rcx,1), %zmm2
 vpshufd $1, %xmm16, %xmm17
 vpshufd $1, %ymm0, %ymm1{%k1}
 vaddph %zmm0, %zmm1, %zmm2
 vmovsh (%rax), %xmm0
 vmovw %eax, %xmm1
 vfmadd132ph %zmm0, %zmm1, %zmm2
 vcmpph $1, %zmm0, %zmm1, %k1
 vpdpbusd %zmm0, %zmm1, %zmm2
 vpclmulqdq $1, %zmm0, %zmm1, %zmm2
 bextr $0x1234, %eax, %ecx
 blcfill %eax, %ecx
 vprotd $1, %xmm0, %xmm1
 vpcmov %xmm0, %xmm1, %xmm2, %xmm3
 vfrczps %xmm0, %xmm1
 pop (%rax)
 popq 0x10(%rsp)
 pop %r15
 push %r12
 lock addl $1, (%rax)
 lock cmpxchg %ecx, (%rdx)
 rep movsb
 repne scasb
 rep stosq
 mov %fs:0x28, %rax
 mov %gs:0, %rax
 xor %fs:0x28, %rdx
 addr32 mov (%eax), %ecx
 addr32 lea 0x10(%eax,%ebx,4), %ecx
 fld1
 fldt 0x10(%rsp)
 fstpt (%rax)
 fnstsw %ax
 fnstcw 0x10(%rsp)
 faddp
 fmul %st(1), %st
 movsbl (%rax), %ecx
 movzwl %ax, %ecx
 movslq %eax, %rcx
 cmovne %eax, %ecx
 sete %al
 setne 0x10(%rax)
 int3
 int $0x80
 in $0x80, %al
 out %al, $0x80
 in (%dx), %eax
 hlt
 cld
 std
 clc
 cqto
 cltq
 cwtl
 xlat
 sahf
 pushf
 popf
 leave
 shl %cl, %eax
 shl $3, %eax
 shl %eax
 shlw $3, (%rax)
 rol $1, %r8b
 incl (%rax)
 decw %ax
 xchg %rax, %r8
 xchg %eax, %ecx
 cmpxchg %rcx, (%rax)
 xadd %eax, (%rbx)
 bsf %eax, %ecx
 bsr (%rax), %rcx
 movnti %eax, (%rax)
 movntdq %xmm0, (%rax)
 ldmxcsr (%rax)
 stmxcsr 4(%rsp)
 fxsave (%rax)
 xsave (%rax)
 xrstor64 (%rax)
 rdpid %rax
 wrfsbase %rax
 pause
 monitor
 mwait
 sldt %ax
 lgdt (%rax)
 vmcall
 swapgs
 sysretq
 iretq
 clac
 stac
 tpause %eax
 umwait %eax
 serialize
 rdpkru
 ldtilecfg (%rax)
 tilerelease
 tdpbssd %tmm0, %tmm1, %tmm2
 tileloadd (%rax,%rbx,1), %tmm0
far:
 ret
