/* internal.h — the map of the poolmalloc core: the big picture, every
 * structure and constant, and the invariants the code keeps.
 * Never includes anything that allocates; every .c file of the core includes
 * this first.
 *
 * ==========================================================================
 *  LAYERS
 * ==========================================================================
 *
 *    program ──malloc/free──▶ preload/ shim (exports the malloc family)
 *                                   │ forwards, nothing else
 *                                   ▼
 *                             allocator/alloc.c   pm_malloc, pm_free, ...
 *                  size <= 512 and │        │ size > 512, alignment > 512,
 *                  alignment fits  │        │ or a pointer not in our arenas
 *                                  ▼        ▼
 *       heap.c (per-thread) ─▶ pool.c    system.c ─▶ glibc __libc_malloc ...
 *                       │                   (a thread's freed chunks of
 *                       │                   513..262,144 usable bytes wait
 *                       │                   in its heap for its next
 *                       │                   request of their class: the
 *                       │                   chunk cache, system.c)
 *                       │
 *                       ▼
 *                   arena.c ─▶ os.c ─▶ mmap / munmap / madvise
 *                       │         ▲
 *                   registry.c ───┘  "is this address inside one of our
 *                                    arenas?"; the arena space they are
 *                                    committed from
 *
 *  alloc.c is the only file that decides small versus system routing.
 *  os.c is the only file that talks to the kernel about memory, and every
 *  system call of the core goes through its pm_os_syscall, the raw system
 *  call: the core never reads or writes errno.
 *
 *  Beside the program's threads runs, under POOLMALLOC_STATS, the dump
 *  thread (dump.c): snapshots (stats.c) and the decay tick (arena.c). It
 *  is made with clone(), unknown to glibc, so that a single-threaded
 *  program keeps glibc's single-threaded fast paths; it shares the thread
 *  pointer of the thread that made it, and so never touches a __thread
 *  variable (no heap, no pm_thread_heap), errno, or a glibc lock.
 *
 * ==========================================================================
 *  BLOCK, POOL, ARENA
 * ==========================================================================
 *
 *  A block is what malloc returns: PM_CLASS_GRANULE (16) x k bytes, k = 1..32.
 *  A request of n bytes (n = 0 counts as 1) is served by class (n - 1) / 16,
 *  whose blocks are (class + 1) x 16 bytes. Every block is 16-byte aligned.
 *
 *  A pool is a PM_POOL_SIZE (16 KiB) stretch of an arena holding blocks of
 *  one class, back to back from the pool's first byte. Its descriptor
 *  (pm_pool_t) does not live in the pool: all descriptors sit together in
 *  the arena header, so a pool's pages hold nothing but blocks and can later
 *  be given back to the OS whole.
 *
 *  An arena is PM_ARENA_SIZE (256 KiB) of mmap'd memory aligned to its size,
 *  committed from the arena space (one reserved range, I13) while it has
 *  room, so the arena of any address is `addr & ~(PM_ARENA_SIZE - 1)`:
 *
 *   arena base (256 KiB aligned)
 *   ┌───────────────┬─────────────┬──────────────┬─────┬──────────────┐
 *   │ arena header  │ pool 0      │ pool 1       │ ... │ pool 15      │
 *   │ pm_arena_t:   │ (12 KiB:    │ 16 KiB       │     │ 16 KiB       │
 *   │ 16 pool       │ shortened   │ blocks of    │     │              │
 *   │ descriptors,  │ by the      │ one class    │     │              │
 *   │ pool owners,  │ header)     │              │     │              │
 *   │ lists         │             │              │     │              │
 *   └───────────────┴─────────────┴──────────────┴─────┴──────────────┘
 *   0               4 KiB         16 KiB         32 KiB               256 KiB
 *
 *   pool k spans [base + max(k * 16 KiB, PM_ARENA_HEADER_SIZE),
 *                 base + (k + 1) * 16 KiB)
 *
 *  Every pool starts at a multiple of 512 bytes (the header size is one), so
 *  a block whose size is a multiple of some power of two A <= 512 is aligned
 *  to A: that is how memalign(A, n) is served from pools.
 *
 *  Inside a pool, blocks are handed out from the pool's free list. When it
 *  runs dry, the next stretch of untouched blocks, those that end in the
 *  OS page where the first of them ends, is carved into it (lazy carving, as in CPython's
 *  obmalloc: a pool's pages are touched only as it fills, each made
 *  resident by one system call rather than a page fault, which costs
 *  half as much again or more on a virtual machine that traps it, os.c); in a heap's first
 *  few pools of a class, the first stretch is handed out from a colour, a
 *  cache line into the page that varies from pool to pool, so their first
 *  blocks do not all share page offset 0 (see pm_pool_carve). A free block holds
 *  the link to the next one in its first 8 bytes, encoded and checked on
 *  every pop (I12), and the free tag in its next 8 (I6): a random word
 *  that a live block does not hold (malloc writes 0 there), so free tells
 *  a freed block from a live one in the block's own line. Freed blocks go
 *  on the list's head, so a pool freed in another order than it was filled
 *  would hand them out scattered; one that starts serving mostly free,
 *  with a list not in order, has it linked again, lowest address first
 *  (pool.c, ADDRESS ORDER), as a fresh carving would be.
 *
 *  Life of a pool:
 *
 *            acquire (arena lock)           last block freed, and the
 *   UNUSED ─────────────────────▶ IN USE ─────────────────────▶ UNUSED
 *   (on its arena's free-pool     (class and owning  bin has another pool
 *    list)                         heap set; on the
 *                                  heap's bin list
 *                                  while not full, or
 *                                  once full, until a
 *                                  batch came back: I4)
 *
 *  Arenas with at least one unused pool are filed by how many unused pools
 *  they hold (the directory in arena.c). A pool is taken from the arena with the
 *  fewest unused pools, so allocation fills nearly-full arenas and sparse
 *  ones drain and can be unmapped (the reason CPython sorts usable_arenas).
 *  An arena a heap took a pool from is that heap's (its home, until every
 *  pool of the arena is unused or the heap loses its thread), filed in the
 *  heap's own lists: a heap takes its pools from the fullest of its own
 *  arenas, then from the fullest of nobody's. Threads then do not take each
 *  other's released pools, whose lines were still in the other core's
 *  cache, and do not write each other's arena headers: pm_bench_churn on
 *  2 threads takes 16% less time than with one directory for all
 *  (bench/results/arena-homes.md). A heap that wants a pool while only
 *  other heaps' arenas have room maps an arena.
 *  Within a heap, when the pool serving a class runs dry, the fuller of the
 *  first two pools of the bin list with free blocks serves next, so a pool
 *  the program is emptying drains and goes back to its arena too (see
 *  heap_alloc_from). A full pool taken off the list comes back to it once
 *  a sixteenth of its blocks are free (heap.c, REGAINING), so that it then
 *  serves a batch, not the one block a program replacing objects at random
 *  has just freed into it.
 *
 *  Giving memory back (I5, I10), as jemalloc's decay and mimalloc's purge
 *  delay do it: a pool released to its arena keeps its pages, on the
 *  retained list, until it has been unused for POOLMALLOC_PURGE_DELAY (1 s
 *  by default), so a pool taken again soon costs no madvise and no page
 *  faults; then it is purged with madvise(MADV_DONTNEED). The purging is
 *  amortized: each later acquire or release purges at most a small batch
 *  of expired pools, and so does a thread's allocation tick (every 256
 *  KiB it allocates, heap.c's ALLOCATION TICKS); the dump thread's tick
 *  (every interval or purge delay, whichever is shorter) purges the rest,
 *  so a process that goes quiet gives memory back too (without a dump
 *  thread, a batch at a time as its threads go on). A purge takes the
 *  retained pools next to its pool in the arena along, the expired or
 *  those above the cap, in one madvise call for the run. The retained
 *  list is also capped: POOLMALLOC_RETAIN_POOLS (64) to start with,
 *  enforced in steps (once a quarter of it, at most 16 pools, stands
 *  above it), so that pools freed one after another are purged in runs,
 *  and after a grace: a pool above the cap goes once it has been retained
 *  for POOLMALLOC_PURGE_GRACE (100 ms) and no released pool has been
 *  taken back for as long (arena.c, cap_waits), so a program that frees
 *  a structure and at once builds it again takes its pages back.
 *  When the cap is about to
 *  purge early again and, since it last did, most pools handed out without
 *  pages stood for pools it had purged early (within a delay), the program
 *  is cycling over more pools than the cap keeps: the cap grows by that
 *  many, up to POOLMALLOC_RETAIN_POOLS_MAX (16384, 256 MiB), and halves back
 *  once it has not grown for 8 delays. A program that frees and then grows
 *  past what it freed (mostly fresh pools) does not grow the cap, so a
 *  phase that frees everything gives it back at once. A heap that keeps
 *  growing takes its next bare pool with the bare pools after it in the
 *  arena made resident in the same call (populate_run in arena.c): they
 *  join the retained list as if released then, within the cap, and are
 *  handed out next. A program whose pools in use, less the parked ones,
 *  fall to an eighth of their peak (from 1 MiB or more) has collapsed
 *  (collapse_note in arena.c): until it takes a pool again nothing is
 *  retained or parked (the heaps are walked at once), so
 *  one that frees everything is back where it started at once, unless such
 *  drops come within a delay of each other (rounds of a cycle, which the
 *  cap serves), and none falls to an eighth of where the rounds rebuilt
 *  from (which ends the cycle). An arena whose pools are all
 *  unused is unmapped (in the arena space: its slot's pages given back,
 *  the slot kept for the next arena, I13) once none of them holds pages,
 *  except for a reserve (one by default) so a program freeing and
 *  allocating around an arena boundary does not map and unmap on every
 *  cycle. A heap keeps one empty
 *  pool per class (I4), for its next allocation; one carved past its first
 *  page is parked instead, and goes back to its arena, pages and all, once
 *  it has been parked for the purge delay (given back by the next owner
 *  to take or give back a pool or tick, or the dump thread's tick), so an idle
 *  thread pins at most a page per class, and its parked pools until the
 *  delay has run out (a heap that makes and frees batches of blocks
 *  parks a run of pools, as many as it has learnt to need, up to 256:
 *  heap.c, PARKING IN A ROW); when its thread exits, its
 *  kept pools wait a purge delay for a thread to adopt the heap, and are
 *  then purged (threads that come and go find them ready).
 *  A heap that frees most of its blocks in no order empties none of its
 *  pools: once 7 in 8 of its pools have come down to a few live blocks
 *  (sparse, heap.c's SPARSE POOLS: seen through used_mark, with no test
 *  on free's fast path), outside a cycle, they give back their pages that
 *  no live block overlaps (purged_pages, I3), which such a pool takes
 *  back, all at once, when it is met with its free list dry, before it
 *  carves; once half of them (and of the most it held within a delay)
 *  have, those that stay sparse for POOLMALLOC_PURGE_GRACE do.
 *  malloc_trim purges and unmaps everything it can, at once, down to
 *  those pages of every pool in use. glibc's heap,
 *  which returns memory only from its top, is trimmed (glibc's malloc_trim)
 *  once the glibc path's live bytes have stayed halved for the purge delay,
 *  or at once when they collapse to an eighth outside a cycle (system.c);
 *  the trimming thread's chunk cache goes back to glibc first, and every
 *  thread's as it exits (1 MiB a thread at most, 4 MiB once grown).
 *
 *             release           delay run out, or above the cap
 *   IN USE ─────────────▶ RETAINED ─────────────────────────▶ PURGED
 *     ▲  (list tail,         │   (oldest first, with neighbours, │
 *     │   stamped)           │    one madvise for the run)       │
 *     ├──────────────────────┘ acquire: off the list in O(1),    │
 *     │                        under the directory lock          │
 *     └──────────────────────────────────────────────────────────┘
 *                  acquire: no pages, carved afresh
 *
 * ==========================================================================
 *  THREAD HEAPS
 * ==========================================================================
 *
 *  Every thread allocates from its own heap (pm_heap_t, reached through an
 *  initial-exec TLS pointer): per class, a bin listing the heap's pools that
 *  have room. A heap's owner thread allocates and frees its own blocks with
 *  no lock and no atomic read-modify-write, writing only its heap and its
 *  pools' descriptors, which no other thread writes.
 *
 *  A block freed by a thread that does not own its pool goes to the owning
 *  heap's remote ring: the freer claims a position (one compare-and-swap on
 *  remote_tail) and writes the block's address into its slot. When the owner
 *  next runs out of room in a bin it takes the ring's published slots in
 *  order and frees those blocks as its own. The ring holds addresses, not
 *  links: the owner reads a few cache lines of them, where a linked list
 *  would cost it a cache miss per block, each on a line another core wrote
 *  (pm_bench_prodcons: 0.37 s -> 0.28 s). A freer that finds the ring full
 *  empties it, under service_lock, into the owner's newest parcel (a mapped
 *  list of addresses, below, which the owner takes first, and keeps, once
 *  emptied, for the next spill) and pushes into it again; only if that
 *  cannot be (no arena space, the heap no longer OWNED, no parcel mapped)
 *  does the block overflow onto the remote_free stack (blocks linked
 *  through their first word, one compare-and-swap to push, one exchange to
 *  take it all). A block freed twice shows up twice: the first meeting
 *  puts it on its pool's free list, where the second finds it and reports
 *  the double free (I6), so a cycle can never be walked forever.
 *  An owner that has gone idle with blocks waiting (it made them, another
 *  thread freed them) does not collect: once they have waited a purge
 *  delay with no collection, the walk of the heaps (or malloc_trim, at
 *  once) takes them off its ring (under service_lock, which the owner's
 *  collections take too) and stack, into parcels (mapped lists of their
 *  addresses) for the owner, and gives back every page only they overlap
 *  (heap.c, IDLE OWNERS); the owner marks those pages purged when it next
 *  collects, and takes the blocks back without writing to them.
 *
 *  Heaps are never unmapped. A thread's TLS pointer starts at pm_heap_empty,
 *  a static heap with no pools, so the fast path needs no "initialized?"
 *  test: its first allocation takes the slow path, which gives the thread a
 *  heap, adopting an abandoned one if there is one. When a thread exits its
 *  heap is ABANDONED with its pools. A thread with a heap of its own that
 *  then frees a block of one of those pools adopts the pool (heap.c,
 *  ADOPTION): under the abandoned heap's service_lock the pool moves to
 *  the freer's heap, which frees the block, and the pool's later ones, as
 *  their owner. Other frees into it (by a thread with no heap yet, or of a
 *  pool holding sampled blocks) go to its ring, and those threads also
 *  collect the ring and stack, under the service_lock, a batch of 64 frees
 *  at a time (the rest by the
 *  next walk of the heaps: when a thread next takes or gives back a pool
 *  or ticks, 10 ms at least after the last walk, or at the dump thread's
 *  tick; or
 *  by malloc_trim, or the thread that adopts the heap), so blocks
 *  freed after their allocating thread is gone still come back, and pools
 *  that empty go back to their arenas. A
 *  thread created later adopts the heap, what pools are left and all: a
 *  program creating and joining threads by the thousand reuses the same
 *  few heaps.
 *
 *  A heap that lets go of most of a class's blocks at random, while
 *  another thread's heap takes new pools of that class, gives its sparse
 *  pools (a few live blocks each) to the exchange (heap.c, EXCHANGE): a
 *  second permanently ABANDONED heap that nobody allocates from. An owner
 *  that needs a pool takes one from there before it goes to the arenas,
 *  as it would adopt one, and fills it; the blocks still live in it are
 *  freed into the exchange or its new owner like any other thread's. So a
 *  class's free blocks serve whichever thread needs them, as a central
 *  free list would, without the owners' fast paths ever sharing a pool.
 *
 *  The shared heap (heap.c) is permanently ABANDONED: it serves, under its lock, the
 *  rare allocations that cannot have a heap of their own (a thread whose
 *  heap destructor already ran; a heap that could not be mapped), and all
 *  of them under POOLMALLOC_DEBUG=1, whose checks live on the slow path
 *  only (I12), as jemalloc sends every call to its slow path while any
 *  checking option is on: the fast paths never test for debug mode.
 *
 *      states of a heap          thread exits            new thread
 *      OWNED (lock-free) ───────────────────▶ ABANDONED ───────────▶ OWNED
 *         │ fork(): heaps of threads the child does not have (once
 *         │ the child takes the heap directory lock or a pool)
 *         └──────────────────────────────────▶ ORPHANED (never touched
 *                                              again: the fork may have cut
 *                                              their owners mid-update; but
 *                                              their parked pools, whole,
 *                                              are given back, I4)
 *
 * ==========================================================================
 *  LOCKING
 * ==========================================================================
 *
 *  Locks, in the order they nest: the profile unwind lock (read-held by a
 *  thread taking a sample's backtrace, which holds no other lock then but
 *  may take any, to free); the heap directory lock (the list of all
 *  heaps, the abandoned list); a heap's service_lock (ABANDONED heaps are
 *  worked on under it, and parked pools change hands under it, I4); the
 *  exchange's service_lock, taken by an owner that may hold its own (the
 *  exchange is last in the list of heaps, whose locks fork takes in
 *  order); the arena directory lock; the registry lock (taken alone but by fork: an
 *  arena is mapped before the directory lock is taken and unmapped after
 *  it is dropped); the profile lock (profile.c's tables: a leaf, under
 *  which nothing else is locked and nothing allocates).
 *  None is taken by the owner of a heap on the fast path; the arena lock is
 *  taken when a pool is acquired or released, and when a heap's home opens
 *  or closes (its thread starts or exits). An owner's collection takes its
 *  service_lock only if it is free or comes free within a spin: a longer
 *  holder is moving the ring into parcels, which it collects unlocked.
 *  All are pm_lock_t (lock.c), or for the unwind lock pm_rwlock_t, built
 *  on it, never glibc's: the dump thread takes them, and glibc, which does
 *  not know that thread, would let its mutexes skip their atomics in a
 *  program of one thread (dump.c).
 *
 *  fork(): pm_fork_prepare takes every lock in that order and
 *  pm_fork_parent releases them. The child finds them free without writing
 *  them: they live on pages the kernel gives a fork child zeroed
 *  (pm_fork_locks_t), where neither process's writes after the fork are
 *  copy-on-write faults; only where the kernel will not does the child free
 *  them itself. The heaps of the threads that do not exist in the child
 *  are orphaned (their homes closed, so their arenas serve the child's
 *  heaps) when the child first takes the heap directory lock or first needs
 *  a pool from the arenas: a child that execs or exits before never writes
 *  them. No heap is made or adopted in the child before then, since that
 *  takes the directory lock.
 *
 * ==========================================================================
 *  INVARIANTS (code that keeps one names it: "I3")
 * ==========================================================================
 *
 *  I1  An address is registered in the registry iff it lies in an arena that
 *      is mapped. The registry is updated before an arena is first used and
 *      before it is unmapped, and registry leaves are never unmapped, so a
 *      lookup never touches memory that may be unmapped.
 *  I2  A pool is UNUSED iff it is on its arena's free-pool list; then its
 *      class is PM_CLASS_NONE and its used_count is 0.
 *  I3  For an IN USE pool: used_count = blocks handed out and not yet
 *      taken back by the owner (a block on its heap's remote ring or
 *      stack still counts, as does a sampled one) = used_word's count +
 *      used_mark, and used_mark is 0 or
 *      below used_count; free-list length + uncarved blocks (capacity -
 *      carve_index) + purged blocks = capacity - used_count. A purged
 *      block starts in a page of purged_pages, which malloc_trim or a
 *      sparse pool gave back, or another thread under blocks waiting for
 *      an idle owner (marked when the owner takes them back, all at
 *      once): it is carved, not live, and on no free list; every block
 *      starting in such a page is one. A page its owner's heap has yet to
 *      give the kernel (its sparse batch) is under no block of a free
 *      list. A pool is sparse only
 *      while on its bin list, and its heap's sparse_pools counts it.
 *  I4  An IN USE pool with used_count < capacity is on its heap's bin list for
 *      its class (PM_POOL_OFF_LIST clear), or is one of its heap's parked pools
 *      of the class (on the list from heap->parked[class], newest first,
 *      linked by `next`: empty and on no bin list), or is
 *      regaining: full when its OWNED heap's slow path took it off the list,
 *      on no list since, PM_POOL_OFF_LIST clear and used_mark at capacity -
 *      pm_pool_regain_batch, to which used_count has not come down (it
 *      joins the list when it does); the serving pool
 *      (bin->serving: one of the list's, pm_pool_dry for an empty list) may
 *      stay on it full until the next slow path. A pool whose
 *      used_count drops to 0 is released to its arena unless it is the only
 *      pool on its bin list (also in an abandoned heap, for the thread that
 *      adopts it); then, if its owner emptied it and it was carved past its
 *      first page, it is parked if the heap has no parked pool of the class,
 *      else released. One that is not the only pool, carved past its first
 *      page, is parked too if the heap has no parked pool of the class and
 *      fewer than 4 parked in all. Beyond these, a class parks more while its
 *      heap has no more parked than its learnt park_allowance (heap.c,
 *      PARKING IN A ROW; 0 until the heap has taken pools from its arenas
 *      within a delay of sending some back for want of it, at most 256 and
 *      POOLMALLOC_RETAIN_POOLS_MAX). With no purge delay, or while the pools
 *      have collapsed, it is released at once instead. The only pool, emptied by its
 *      owner and not carved past its first page, stays and is kept: its next
 *      emptyings do not reach the owner's slow path (PM_POOL_KEPT, so free's
 *      subtract does not come to 0), until it leaves the list, another pool
 *      joins it, or it carves; then it is not kept, and its next emptying is
 *      decided again. A kept pool has no mark. A parked pool is off the bin
 *      list, so the fast paths never reach it (it has no live block), and the
 *      owner takes it back under service_lock on its next slow path of the
 *      class that finds no room (or of another class, if this class has more
 *      than one parked: pm_pool_reuse makes it one of that class), or any
 *      thread, under the same lock, gives it back to its arena once it has
 *      been parked for the purge delay. A heap
 *      that is abandoned keeps its parked pools, and the empty ones on its bin
 *      lists their pages, for a purge delay (or none, with no delay or while
 *      the pools have collapsed): then the walk of the heaps gives them back,
 *      unless a thread adopted the heap first. An ORPHANED heap's are given
 *      back as an OWNED heap's.
 *  I5  An arena with u >= 1 unused pools is on list u - 1 of its home (a
 *      heap's, which is open), or of the directory if it has no home,
 *      unless purges of its pools are in progress (purges_pending); an
 *      arena with none is on no list. An arena whose pools are all unused
 *      has no home. List PM_POOLS_PER_ARENA - 1 of the directory (every
 *      pool unused) holds at most POOLMALLOC_RESERVE_ARENAS arenas (the
 *      reserve, default 1) none of whose pools is resident: an arena that
 *      is empty beyond the reserve is unmapped as soon as it holds no pages
 *      (at once), or as soon as one of its retained pools is purged (I10):
 *      all of them then go with it, in one munmap.
 *  I6  A carved block is free iff it is on its pool's free list or
 *      purged (I3); every block on a free list holds the free tag
 *      (pm_block_keys.free_tag) in its second word, and a block handed out
 *      holds 0 there until the program writes it. free() of a block that
 *      is not live (never carved, purged, or on the list) is a double
 *      free and aborts. free's fast path takes a block that does not
 *      hold the tag, below the pool's fast_free_bound, which is 0 while
 *      the pool has a purged page or a sampled block (I11); the full
 *      path decides exactly, by the owner (a walk of the free list when
 *      the block holds the tag), or, by another thread, by the tag alone,
 *      and the owner checks exactly as it takes the block back.
 *  I7  Every block address is pool start + i x block size for 0 <= i <
 *      capacity; any other address inside an arena is not a block and
 *      free() of it aborts.
 *  I8  stats: per class, the blocks waiting on remote rings, stacks and
 *      parcels number the remote frees pushed (remote_freed_total, over
 *      all heaps) minus those collected (remote_collected_total); live
 *      blocks are the sum of used_count over the class's pools minus those
 *      waiting, and never more than allocated_total (checked by
 *      pm_heap_validate).
 *  I9  A pool's heap and class change only while it is UNUSED or by its
 *      owner (or by the thread that took it parked, I4); its heap also
 *      when a thread adopts it from an ABANDONED heap, under that heap's
 *      service_lock (ADOPTION, heap.c), or its owner gives it to the
 *      exchange, under the exchange's (EXCHANGE), after which a block of
 *      it met in the old heap's ring or stack is passed on. A thread that does not
 *      own a live block's pool may read them. They are kept in
 *      the arena header (pool_heap, pool_class: the class also in the
 *      descriptor, for the owner), not on the descriptor's line, which the
 *      owner writes on every call.
 *  I10 An UNUSED pool is on the retained list iff it is resident; the list
 *      is in release order (each pool stamped with CLOCK_MONOTONIC_COARSE
 *      when released, or when populated ahead of a growing heap) and
 *      changes only under the directory lock, so a pool
 *      being acquired leaves it before its new owner carves a block. A
 *      retained pool is purged (madvise) once it has been unused for
 *      POOLMALLOC_PURGE_DELAY, by a later acquire or release or the dump
 *      thread's tick, or early when the list grows past its adaptive cap
 *      by pm_retain_slack (then down to the cap, oldest first), which is 0
 *      while the pools have collapsed: at once then, else after the cap's
 *      grace (cap_waits). A purged
 *      pool is carved afresh, so nothing reads its zeroed pages as a free
 *      list. Purges made together (pm_os_purge_batch_t) reach the kernel
 *      before any of their pools can be handed out and before their arena
 *      is unmapped: a range purged late would zero blocks another heap has
 *      carved since. The decay's are made after the directory lock is
 *      dropped, while their arenas are off the lists (purges_pending, I5);
 *      malloc_trim's before it is dropped; an owner's, of its own pools,
 *      before it releases them.
 *  I12 Every link of a free list or a remote_free stack is stored encoded
 *      (pm_link_set) and decoded only through pm_link_get; a pool's link is
 *      checked (pm_link_next) before it becomes the list's head, and a
 *      remote link before the block it names is read, so a corrupted link
 *      aborts instead of handing out or touching an arbitrary address. With
 *      POOLMALLOC_DEBUG=1 no thread has a heap of its own: every small
 *      request takes the shared heap's locked slow path, where pools made in
 *      debug mode (debug_fill) keep PM_DEBUG_FREED_BYTE in every free block
 *      past its link, checked when the block is handed out again.
 *  I13 The arena space, once reserved, stays mapped and readable to its
 *      last byte for the life of the process: a slot with no arena reads
 *      as zeros (never written, or its pages given back when its arena
 *      went, registry.c). So free reads the descriptor of any pointer in
 *      the space without asking the registry; a slot with no arena has a
 *      pool with no heap there, and the pointer goes to pm_pool_checked,
 *      whose tests it fails (an unused pool: pool_class 0), and which asks
 *      the registry before it reports.
 */
#ifndef POOLMALLOC_INTERNAL_H
#define POOLMALLOC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "options.h"
#include "poolmalloc.h"

#define PM_HIDDEN __attribute__((visibility("hidden")))
#define PM_LIKELY(x) __builtin_expect(!!(x), 1)
#define PM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PM_NORETURN __attribute__((noreturn))
/* Where GCC would not inline on its own and a call per block costs. */
#define PM_ALWAYS_INLINE inline __attribute__((always_inline))

static inline bool pm_is_power_of_two(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/* A counter written by one thread (its heap's owner) and read by any (the
 * stats): a relaxed load and store, not a read-modify-write, so it costs a
 * plain add on x86-64 and is no data race to ThreadSanitizer. The width is
 * spelled out per type: clang rejects GCC's operand-size modifier (%z) on a
 * memory operand. */
#if defined(__x86_64__) && !defined(PM_SANITIZED)
static inline void pm_counter_add_u64(uint64_t *counter, uint64_t n)
{
    __asm__("addq %1, %0" : "+m"(*counter) : "er"(n));
}
static inline void pm_counter_add_u16(uint16_t *counter, uint16_t n)
{
    __asm__("addw %1, %0" : "+m"(*counter) : "ir"(n));
}
static inline void pm_owned_or_u64(uint64_t *word, uint64_t bits)
{
    __asm__("orq %1, %0" : "+m"(*word) : "er"(bits));
}
#define PM_COUNTER_ADD(counter, n) \
    _Generic((counter), uint64_t: pm_counter_add_u64, uint16_t: pm_counter_add_u16)(&(counter), (n))
#define PM_OWNED_OR(word, bits) pm_owned_or_u64(&(word), (bits))
#else
#define PM_COUNTER_ADD(counter, n) \
    __atomic_store_n(&(counter), __atomic_load_n(&(counter), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define PM_OWNED_OR(word, bits) \
    __atomic_store_n(&(word), __atomic_load_n(&(word), __ATOMIC_RELAXED) | (bits), __ATOMIC_RELAXED)
#endif

/* Relaxed loads of words other threads may write, folded into the
 * instruction that uses them: GCC loads an atomic into a register first,
 * which took free's fast path an instruction more for each of the two it
 * reads (the arena space's base and the pool's owner), and glibc's free
 * one more for the flag of arenas outside the space. */
#if defined(__x86_64__) && !defined(PM_SANITIZED)
static inline uintptr_t pm_relaxed_sub(uintptr_t x, const uintptr_t *word)
{
    __asm__("subq %1, %0" : "+r"(x) : "m"(*word));
    return x;
}
static inline bool pm_relaxed_eq(void *const *word, const void *value)
{
    bool eq;
    __asm__("cmpq %2, %1" : "=@ccz"(eq) : "m"(*word), "r"(value));
    return eq;
}
static inline bool pm_relaxed_true(const bool *flag)
{
    bool set;
    __asm__("cmpb $0, %1" : "=@ccnz"(set) : "m"(*flag));
    return set;
}
#else
static inline uintptr_t pm_relaxed_sub(uintptr_t x, const uintptr_t *word)
{
    return x - __atomic_load_n(word, __ATOMIC_RELAXED);
}
static inline bool pm_relaxed_eq(void *const *word, const void *value)
{
    return __atomic_load_n(word, __ATOMIC_RELAXED) == value;
}
static inline bool pm_relaxed_true(const bool *flag) { return __atomic_load_n(flag, __ATOMIC_RELAXED); }
#endif

/* ---- sizes --------------------------------------------------------------- */
#define PM_ARENA_SHIFT 18
#define PM_ARENA_SIZE ((size_t)1 << PM_ARENA_SHIFT)      /* 256 KiB */
#define PM_POOL_SHIFT 14
#define PM_POOL_SIZE ((size_t)1 << PM_POOL_SHIFT)        /* 16 KiB */
#define PM_POOLS_PER_ARENA (PM_ARENA_SIZE / PM_POOL_SIZE) /* 16 */
#define PM_ARENA_HEADER_SIZE ((size_t)4096)               /* >= sizeof(pm_arena_t) */
#define PM_OS_PAGE_SIZE ((size_t)4096)
#define PM_MAX_BLOCKS_PER_POOL (PM_POOL_SIZE / PM_CLASS_GRANULE) /* 1024 */
#define PM_POOL_MAP_WORDS (PM_MAX_BLOCKS_PER_POOL / 64)          /* 16: a bit a block */
#define PM_CLASS_NONE 0xff
#define PM_CACHE_LINE 64
/* Largest alignment a pool can honour (see BLOCK, POOL, ARENA above). */
#define PM_POOL_ALIGN_MAX ((size_t)512)

/* ---- size classes (sizeclass.c) ----------------------------------------- */
/* The class of `size` bytes, 1..PM_SMALL_MAX. */
static inline unsigned pm_class_of_nonzero(size_t size)
{
    return (unsigned)((size - 1) / PM_CLASS_GRANULE);
}
/* The same for 0..PM_SMALL_MAX: 0 bytes are served as 1. */
static inline unsigned pm_class_of(size_t size)
{
    return size == 0 ? 0 : pm_class_of_nonzero(size);
}
static inline size_t pm_class_size(size_t class_index)
{
    return (class_index + 1) * PM_CLASS_GRANULE;
}
/* A class's multiplier r: ceil(2^32 / size), or 2^32 / size + 1 for a
 * power of two. Two uses, for a pool offset o, -4096 <= o < 2^14 (pool 0's
 * arena header before its start, a pool's size), and size <= 512:
 * - Exact division without a divide: (o * r) >> 32 is o / size for o >= 0
 *   (the error term o / 2^32 stays below 1 / size).
 * - Free's test of a block start (pm_pool_block_below): with the step
 *   e = size * r mod 2^32 (0 < e <= size), block k's offset k * size
 *   gives (o * r) mod 2^32 = k * e exactly, and every other offset, the
 *   header's included, gives 8,384,513 or more (just under 2^23), far
 *   past any pool's blocks' k * e (2^14 at the most). So "below n * e"
 *   is "one of the first n block starts", in one compare. Checked offset
 *   by offset, class by class, in test_pool_fast_block_exact. */
PM_HIDDEN extern const uint32_t pm_class_reciprocal[PM_CLASS_COUNT];

/* ---- zeroing and copying blocks ------------------------------------------ */
/* glibc's memset and memcpy, called, never inlined. Their sizes here are
 * at most 512 bytes, or fixed, and GCC, seeing the bound, inlines memset
 * and memcpy as `rep stos` and `rep movs`, which take longer to start than
 * glibc's vector code takes to finish at these sizes: churn made by calloc
 * ran 20% faster calling memset (bench/results/calloc-realloc.md). Under
 * these names the compiler does not treat them as builtins. */
extern void *pm_libc_memset(void *dest, int c, size_t n) __asm__("memset");
extern void *pm_libc_memcpy(void *dest, const void *src, size_t n) __asm__("memcpy");

/* ---- format.c: text into fixed buffers, without malloc or stdio ---------- */
typedef struct pm_buf {
    char *start, *at, *end;
} pm_buf_t;
PM_HIDDEN void pm_buf_init(pm_buf_t *buf, char *storage, size_t capacity);
PM_HIDDEN void pm_buf_str(pm_buf_t *buf, const char *s);
PM_HIDDEN void pm_buf_char(pm_buf_t *buf, char c);
PM_HIDDEN void pm_buf_uint(pm_buf_t *buf, uint64_t v, unsigned width);
PM_HIDDEN void pm_buf_hex(pm_buf_t *buf, uintptr_t v);
PM_HIDDEN void pm_buf_bytes(pm_buf_t *buf, uint64_t v);
PM_HIDDEN void pm_buf_fixed(pm_buf_t *buf, double v, unsigned decimals);
PM_HIDDEN void pm_buf_pad_to(pm_buf_t *buf, const char *line_start, size_t width);
PM_HIDDEN void pm_buf_json_string(pm_buf_t *buf, const char *s);

/* ---- os.c ------------------------------------------------------------------ */
PM_HIDDEN void *pm_os_map_aligned(size_t size, size_t alignment);
PM_HIDDEN void *pm_os_map(size_t size);
PM_HIDDEN void pm_os_unmap(void *addr, size_t size);
/* Address space that reads as zeros and cannot be written (registry.c's
 * arena space): pm_os_commit makes part of it ordinary memory, and
 * pm_os_decommit gives that back, reading as zeros again. */
PM_HIDDEN void *pm_os_reserve(size_t size, size_t alignment);
PM_HIDDEN bool pm_os_commit(void *addr, size_t size);
PM_HIDDEN void pm_os_decommit(void *addr, size_t size);
/* True if RLIMIT_AS caps the process's address space. */
PM_HIDDEN bool pm_os_address_space_limited(void);
/* A thread stack of `size` bytes (its lowest address) with a guard page below. */
PM_HIDDEN void *pm_os_map_stack(size_t size);
/* Gives the pages back to the OS; the range stays mapped and reads as zeros.
 * False if the kernel refused (pages locked by mlock): they stay as they were. */
PM_HIDDEN bool pm_os_purge(void *addr, size_t size);
/* Ranges given back together, as pm_os_purge would one by one, in one
 * vectored call where the kernel has it (see os.c). The caller adds ranges
 * and flushes before anything else may use them: until the flush, their
 * pages may still be resident. */
#define PM_OS_PURGE_BATCH 16
typedef struct {
    struct iovec ranges[PM_OS_PURGE_BATCH];
    unsigned count;
} pm_os_purge_batch_t;
/* Adds a range (merged with the last if they touch), flushing first when
 * the batch is full. */
PM_HIDDEN void pm_os_purge_add(pm_os_purge_batch_t *batch, void *addr, size_t size);
PM_HIDDEN void pm_os_purge_flush(pm_os_purge_batch_t *batch);
/* Whether pm_os_purge_flush gives a batch's ranges to the kernel in one
 * call: a second thread has run, and neither the kernel, a seccomp filter
 * nor POOLMALLOC_PURGE_BATCH=0 has refused it. Else a batch is a call a
 * range, made later. */
PM_HIDDEN bool pm_os_purges_vectored(void);
/* Makes the pages of a committed range resident now, in one system call,
 * as a write to each would (MADV_POPULATE_WRITE); once the kernel refuses
 * (before Linux 5.14, a seccomp filter, a cgroup at its limit), it does
 * nothing again. Returns true if the pages are resident now. */
PM_HIDDEN bool pm_os_populate(void *addr, size_t size);
/* False once the kernel has refused pm_os_populate. */
PM_HIDDEN bool pm_os_can_populate(void);
/* Has the kernel hand fork children [page, page + size) zeroed; false if it
 * will not (Linux before 4.14, memory that is not private and anonymous, or
 * pages larger than PM_OS_PAGE_SIZE, when the advice would take in more). */
PM_HIDDEN bool pm_os_wipe_on_fork(void *page, size_t size);
PM_HIDDEN void pm_os_write_all(int fd, const char *buf, size_t len);
/* Reads a small file (under /proc) whole into text, NUL-terminated; returns
 * its length, or -1. One read: /proc files are generated per read. */
PM_HIDDEN ssize_t pm_os_read_text(const char *path, char *text, size_t capacity);
/* The raw system call: returns -errno on failure and never writes errno.
 * PM_OS_CALL takes from one to six arguments of any integer or pointer type. */
PM_HIDDEN long pm_os_syscall(long number, long a, long b, long c, long d, long e, long f);
#define PM_OS_CALL_(number, a, b, c, d, e, f, ...) \
    pm_os_syscall(number, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define PM_OS_CALL(number, ...) PM_OS_CALL_(number, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
/* A descriptor (O_CLOEXEC added) or -errno. */
PM_HIDDEN int pm_os_open(const char *path, int flags, mode_t mode);
PM_HIDDEN void pm_os_close(int fd);
/* One write, retried on EINTR: bytes written or -errno. */
PM_HIDDEN ssize_t pm_os_write(int fd, const void *buf, size_t len);
/* Sleeps while *word == expected, until woken or the CLOCK_MONOTONIC
 * deadline (NULL: none); 0 or -errno (-EAGAIN, -ETIMEDOUT, -EINTR). */
PM_HIDDEN int pm_os_futex_wait(_Atomic uint32_t *word, uint32_t expected,
                               const struct timespec *deadline);
PM_HIDDEN void pm_os_futex_wake(_Atomic uint32_t *word, int waiters);
/* Lets another thread run: a wait for one that is a few instructions from
 * publishing (heap.c's remote ring). */
PM_HIDDEN void pm_os_yield(void);
/* Milliseconds of a monotonic clock, to the last scheduler tick. */
PM_HIDDEN uint64_t pm_os_coarse_ms(void);
/* CLOCK_MONOTONIC by the system call, for a fork child's handler (os.c
 * says why). */
PM_HIDDEN void pm_os_monotonic(struct timespec *now);
PM_HIDDEN PM_NORETURN void pm_fatal(const char *what, const void *addr,
                                    int class_index);
/* A line on stderr: the strings up to NULL, then a newline (the first
 * 510 bytes of them). */
PM_HIDDEN void pm_os_say(const char *first, ...) __attribute__((sentinel));
/* A validator's failed check, said on stderr ("poolmalloc: invalid:
 * file:line: the check"); returns false. PM_VALID(cond) is cond, or that:
 * a stress run's "validate failed" then names the invariant that broke. */
PM_HIDDEN bool pm_validate_failed(const char *where, const char *check);
#define PM_VALID(cond)                                                                             \
    ((cond) || pm_validate_failed(__FILE_NAME__ ":" PM_VALID_LINE(__LINE__), #cond))
#define PM_VALID_LINE(line) PM_VALID_STR(line)
#define PM_VALID_STR(line) #line

/* ---- lock.c: the allocator's mutex ----------------------------------------- */
/* Not pthread_mutex_t: in a process glibc believes single-threaded, glibc's
 * mutex skips its atomic instruction, and the dump thread runs unknown to
 * glibc (dump.c) so as to keep the program in that mode. A futex word:
 * 0 free, 1 held, 2 held with sleepers. Uncontended, one compare-and-swap
 * to take and one exchange to give back, as glibc's own. */
typedef struct pm_lock {
    _Atomic uint32_t word;
} pm_lock_t;
#define PM_LOCK_INITIALIZER {0}
PM_HIDDEN void pm_lock_contended(pm_lock_t *lock);
/* The lock if its holder lets it go within a short spin (lock.c). */
PM_HIDDEN bool pm_lock_spin(pm_lock_t *lock);
/* The lock if it is free: one compare-and-swap. */
static inline bool pm_lock_free_now(pm_lock_t *lock)
{
    uint32_t free_word = 0;
    return atomic_compare_exchange_strong_explicit(&lock->word, &free_word, 1,
                                                   memory_order_acquire, memory_order_relaxed);
}
static inline void pm_lock(pm_lock_t *lock)
{
    if (PM_UNLIKELY(!pm_lock_free_now(lock)))
        pm_lock_contended(lock);
}
/* The lock if it is free now or within a short spin; false, without
 * sleeping, if its holder keeps it longer. */
static inline bool pm_lock_unless_busy(pm_lock_t *lock)
{
    return PM_LIKELY(pm_lock_free_now(lock)) || pm_lock_spin(lock);
}
static inline void pm_unlock(pm_lock_t *lock)
{
    if (PM_UNLIKELY(atomic_exchange_explicit(&lock->word, 0, memory_order_release) == 2))
        pm_os_futex_wake(&lock->word, 1);
}
/* A new lock; or, in a fork child, one whose holder may not exist there. */
static inline void pm_lock_init(pm_lock_t *lock)
{
    atomic_store_explicit(&lock->word, 0, memory_order_relaxed);
}

/* Readers and writers, writers first: once a writer waits, no reader comes
 * in, so a stream of readers cannot hold it off. `state` counts the readers
 * inside, plus PM_RWLOCK_WRITER while a writer waits or holds it; writers
 * take turns on `writers`. All zero is free, as for pm_lock_t, so it can
 * live on a page the kernel gives a fork child zeroed (pm_fork_locks_t),
 * which glibc's writer-first rwlock (a kind set at init) cannot. */
typedef struct pm_rwlock {
    _Atomic uint32_t state;
    pm_lock_t writers;
} pm_rwlock_t;
#define PM_RWLOCK_WRITER 0x80000000u
PM_HIDDEN void pm_rwlock_read(pm_rwlock_t *lock);
PM_HIDDEN void pm_rwlock_read_done(pm_rwlock_t *lock);
PM_HIDDEN void pm_rwlock_write(pm_rwlock_t *lock);
PM_HIDDEN void pm_rwlock_write_done(pm_rwlock_t *lock);

/* The locks fork holds over the call (pm_fork_prepare) that are not a heap's,
 * each on a cache line of its own, alone on one page. After a fork, every
 * write to a page the parent and the child still share costs whichever of
 * them writes first a copy-on-write fault (25-30 us each on the project's
 * 2-vCPU guest), and unlocking these in the parent and re-initializing them
 * in the child cost eleven such faults a fork, 0.45 ms. So the page is one
 * the kernel gives a fork child zeroed, every lock free (MADV_WIPEONFORK,
 * pm_os_wipe_on_fork): the parent's unlocks write a page it alone has, and
 * the child writes none. A heap's service lock lives on a page of the same
 * kind, the first of its heap slab (heap.c). pm_os_wipe_on_fork may fail:
 * pm_fork_child then initializes every lock itself. */
typedef union pm_fork_locks {
    struct {
        _Alignas(PM_CACHE_LINE) pm_lock_t heaps;       /* heap.c: the heap directory */
        _Alignas(PM_CACHE_LINE) pm_lock_t shared_heap; /* heap.c: its service lock */
        _Alignas(PM_CACHE_LINE) pm_lock_t exchange;    /* heap.c: the exchange heap's */
        _Alignas(PM_CACHE_LINE) pm_lock_t arenas;      /* arena.c: the arena directory */
        _Alignas(PM_CACHE_LINE) pm_lock_t registry;    /* registry.c: the registry, the space */
        _Alignas(PM_CACHE_LINE) pm_lock_t stats;       /* stats.c: a report's snapshot */
        _Alignas(PM_CACHE_LINE) pm_lock_t profile;     /* profile.c: its tables */
        _Alignas(PM_CACHE_LINE) pm_rwlock_t unwinders; /* profile.c: its unwinds */
    };
    char page[PM_OS_PAGE_SIZE];
} pm_fork_locks_t;
PM_HIDDEN extern pm_fork_locks_t pm_fork_locks;

/* ---- registry.c ------------------------------------------------------------ */
#define PM_REGISTRY_ADDRESS_BITS 47 /* x86-64 user space */
#define PM_REGISTRY_LEAF_BITS 15
#define PM_REGISTRY_ROOT_BITS (PM_REGISTRY_ADDRESS_BITS - PM_ARENA_SHIFT - PM_REGISTRY_LEAF_BITS) /* 14 */
#define PM_REGISTRY_LEAF_SIZE ((size_t)1 << PM_REGISTRY_LEAF_BITS)

typedef struct pm_registry_leaf {
    uint8_t arena_mapped[PM_REGISTRY_LEAF_SIZE]; /* accessed atomically */
} pm_registry_leaf_t;

PM_HIDDEN extern pm_registry_leaf_t *pm_registry_root[(size_t)1 << PM_REGISTRY_ROOT_BITS];

/* I1: true iff addr lies in a mapped arena; reads only the registry. */
static inline bool pm_registry_contains(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (PM_UNLIKELY(a >> PM_REGISTRY_ADDRESS_BITS))
        return false; /* kernel half or garbage: never an arena */
    uintptr_t arena_number = a >> PM_ARENA_SHIFT;
    pm_registry_leaf_t *leaf =
        __atomic_load_n(&pm_registry_root[arena_number >> PM_REGISTRY_LEAF_BITS], __ATOMIC_ACQUIRE);
    if (leaf == NULL)
        return false;
    return __atomic_load_n(&leaf->arena_mapped[arena_number & (PM_REGISTRY_LEAF_SIZE - 1)],
                           __ATOMIC_ACQUIRE) != 0;
}

/* The arena space (I13): [base, base + PM_ARENA_SPACE_SIZE). Until the
 * first arena, and for good if the space cannot be reserved, the base is
 * PM_ARENA_SPACE_NONE, a non-canonical address: no pointer a program holds
 * lies in that range (dereferencing one faults in glibc's free too). One
 * word, so no reader sees half of a publication. 32 GiB, not more:
 * valgrind's address space manager refuses a reservation of 64. */
#define PM_ARENA_SPACE_SHIFT 35
#define PM_ARENA_SPACE_SIZE ((size_t)1 << PM_ARENA_SPACE_SHIFT) /* 131,072 arenas */
#define PM_ARENA_SPACE_NONE ((uintptr_t)1 << 63)
PM_HIDDEN extern uintptr_t pm_arena_space_base; /* accessed atomically */
/* Set once an arena has been mapped outside the space: free must then ask
 * the registry about pointers outside it too. */
PM_HIDDEN extern bool pm_arenas_outside_space;

/* True iff addr lies in the arena space, in an arena or not (I13). */
static inline bool pm_arena_space_contains(const void *addr)
{
    return pm_relaxed_sub((uintptr_t)addr, &pm_arena_space_base) >> PM_ARENA_SPACE_SHIFT == 0;
}
/* An arena outside the space, for a pointer that is not in it. */
static inline bool pm_outside_arena_contains(const void *addr)
{
    return PM_UNLIKELY(pm_relaxed_true(&pm_arenas_outside_space)) &&
           pm_registry_contains(addr);
}
/* Does a pointer take the pools' way (free, realloc, usable size)? Yes in
 * the arena space, arena or not (pm_pool_checked tells a block from
 * misuse there, I13), and in an arena outside it; anything else is glibc's. */
static inline bool pm_pool_path(const void *addr)
{
    return pm_arena_space_contains(addr) || pm_outside_arena_contains(addr);
}
/* A new arena, zeroed, PM_ARENA_SIZE-aligned and registered (I1); from the
 * space if it has room. NULL if none can be mapped. */
PM_HIDDEN void *pm_registry_map_arena(void);
/* Unregisters an arena, then gives its memory back. */
PM_HIDDEN void pm_registry_unmap_arena(void *arena);
/* The registry's resident part, for the stats' metadata: its leaves' pages
 * written, a page for each 1 GiB of address space that has held an arena. */
PM_HIDDEN size_t pm_registry_metadata_bytes(void);

/* ---- pools and arenas ------------------------------------------------------ */
/* A free block: its first 8 bytes hold the link to the next one, encoded
 * (see pm_link_set below), and its next 8 the free tag (I6): every block
 * is 16 bytes or more. */
typedef struct pm_block {
    struct pm_block *next_encoded;
    uintptr_t tag;
} pm_block_t;

struct pm_heap;

typedef struct pm_pool {
    /* Written only by the owning heap's thread (I9). */
    /* While UNUSED a pool has no free list and is on no bin list: those two
     * words link it into the retained list instead (I10), so the list costs
     * the descriptor nothing (one cache line each). */
    union {
        pm_block_t *free_list;         /* IN USE: blocks ready to hand out */
        struct pm_pool *retained_next; /* UNUSED, retained: the next newer one */
    };
    struct pm_pool *next; /* bin list, or arena free-pool list */
    union {
        struct pm_pool *prev;          /* IN USE: bin list */
        struct pm_pool *retained_prev; /* UNUSED, retained: the next older one */
    };
    /* The owner is not here but in the arena header (pm_pool_heap): other
     * threads read it, and this line is written on every malloc and free. */
    uint32_t carve_index;     /* blocks [carve_index, capacity) never carved */
    uint32_t block_size;      /* class size, cached for the free path */
    uint32_t reciprocal;      /* pm_class_reciprocal[class], likewise */
    uint32_t start_low;       /* the low 32 bits of pm_pool_start: free's offset */
    /* By the owner: pm_pool_block_bound of the carved blocks while the
     * pool has no purged page and no sampled block, else 0. free's fast
     * path takes a block start below it (pm_pool_fast_block), so one
     * compare refuses an address that starts no block, a block never
     * carved, one in a page given back and a sampled one, all of which the
     * full path tells apart (I6, I7, I11). At most 2^14, but 32 bits wide:
     * free compares it with its product straight from memory, where a
     * 16-bit field took a load of its own (one instruction a free). */
    uint32_t fast_free_bound;
    /* I3's used_count less used_mark in the low 14 bits, PM_POOL_KEPT set
     * while its bin keeps it when it empties, and PM_POOL_OFF_LIST set
     * while it is on no bin list (I4): one word, so that free's fast path
     * learns "now empty (and not kept), down to its mark, or off its list"
     * from one subtract's flags (pm_pool_put_used). Read through
     * pm_pool_used, pm_pool_kept, pm_pool_on_bin_list. */
    uint16_t used_word;
    uint16_t capacity;        /* blocks that fit in this pool */
    uint8_t class_index;      /* PM_CLASS_NONE when UNUSED (I2) */
    /* Pages [0, touched_pages) of the pool (from pm_pool_start) were
     * carved, so made resident, since the pool last gave its pages back
     * (then 0); carving reaches them in order. Not 0: its pages may hold
     * RSS (pm_pool_resident, I10). */
    uint8_t touched_pages;
    bool debug_fill;          /* POOLMALLOC_DEBUG: its free blocks hold the pattern (I12) */
    uint16_t sampled_count;   /* sampled blocks live in it (I11); atomic */
    /* Bit p: OS page p of the pool (from pm_pool_start) was given back by
     * malloc_trim or as a sparse pool while the pool stayed in use, and the
     * blocks that start in it are off the free list (I3). */
    uint8_t purged_pages;
    /* By the owner: 0, or a count below used_count at which the subtract
     * of pm_pool_put_used next comes to 0 (pm_pool_set_mark), so that a
     * pool draining towards sparse is seen with no test of its own on
     * free's fast path (heap.c, SPARSE POOLS). Read by any thread. */
    uint16_t used_mark;
    /* By the owner: the pool came down to its mark, not alone in its bin,
     * and has not emptied, filled or served since; counted in its heap's
     * sparse_pools; the heap's sparse_epoch when it came down to it. */
    bool sparse;
    uint8_t sparse_epoch;
    /* Taken from an ABANDONED heap while in use (ADOPTION, heap.c), since
     * it was last acquired: a block of it met in another heap's ring or
     * stack was freed there as the pool changed hands, and is passed on
     * to its owner, not reported. Atomic: set under the old heap's
     * service_lock, read by its collectors. */
    bool adopted;
    /* By the owner: taken off its bin list full, the pool regains room
     * off it, PM_POOL_OFF_LIST clear and used_mark at its regain mark,
     * which free's subtract reaches after pm_pool_regain_batch blocks came
     * back (I4; heap.c, REGAINING). */
    bool regaining;
} __attribute__((aligned(PM_CACHE_LINE))) pm_pool_t;
_Static_assert(sizeof(pm_pool_t) == PM_CACHE_LINE, "a pool descriptor is one cache line");

/* A heap's own arenas (I5): those its pools came from, filed like the
 * directory's by how many unused pools they hold, by_unused[u - 1] for
 * 1 <= u < PM_POOLS_PER_ARENA (an arena whose pools are all unused is
 * nobody's). Changed under the arena directory lock only (arena.c). */
typedef struct pm_arena_home {
    struct pm_arena *by_unused[PM_POOLS_PER_ARENA - 1];
    /* While its heap has an owner (or is the shared heap): a closed home
     * files no arena, and its arenas go back to the directory. */
    bool open;
} pm_arena_home_t;

typedef struct pm_arena {
    pm_pool_t pools[PM_POOLS_PER_ARENA];
    /* Each pool's owner (NULL when UNUSED) and class (I9): what a thread
     * freeing a block reads to tell its owner and check it (I7), on lines
     * written only when a pool changes hands. In the descriptor, every
     * free by another thread read a line its owner writes on every malloc
     * and free, and made the owner's next write wait for it
     * (bench/results/pool-identity.md). Atomic: any thread reads them. */
    _Alignas(PM_CACHE_LINE) struct pm_heap *pool_heap[PM_POOLS_PER_ARENA];
    uint8_t pool_class[PM_POOLS_PER_ARENA];
    pm_pool_t *free_pools;                /* UNUSED pools (I2) */
    /* When each pool was last released (CLOCK_MONOTONIC_COARSE, ms), for
     * the purge delay; meaningful while it is retained (I10), or parked
     * (I4: then written under its heap's service_lock). Here rather than in
     * the descriptor, which is one cache line, full. */
    uint64_t released_ms[PM_POOLS_PER_ARENA];
    struct pm_arena *next, *prev;         /* directory or home list (I5) */
    pm_arena_home_t *home;                /* the heap's that took it, or NULL (I5) */
    struct pm_arena *all_next, *all_prev; /* every mapped arena */
    uint32_t free_pool_count;
    /* Bit k: pool k was populated ahead of a growing heap (arena.c,
     * populate_run) and is retained still. Taking it is growth, not the
     * program taking back pools it freed (arena.c, cap_waits). Under the
     * directory lock. */
    uint16_t populated_ahead;
    /* Purges of its pools in progress without the directory lock: while
     * any is, the arena is on no list (I5) and not unmapped (arena.c,
     * purge_work_t). */
    uint32_t purges_pending;
} pm_arena_t;
_Static_assert(sizeof(pm_arena_t) <= PM_ARENA_HEADER_SIZE, "arena header overflows pool 0");
_Static_assert(offsetof(pm_arena_t, pools) == 0 && sizeof(pm_pool_t) == 8 * sizeof(void *),
               "pm_pool_of and pm_pool_index_of count from the arena base");
_Static_assert(PM_ARENA_HEADER_SIZE % PM_POOL_ALIGN_MAX == 0, "pool 0 must stay 512-aligned");

#define PM_POOL_OFF_LIST ((uint16_t)0x8000)
/* Set, the word stays above 0 when the pool empties: free's subtract does
 * not call the owner for a pool its bin keeps anyway (I4). */
#define PM_POOL_KEPT ((uint16_t)0x4000)
#define PM_POOL_USED_BITS ((uint16_t)(PM_POOL_KEPT - 1))
_Static_assert(PM_MAX_BLOCKS_PER_POOL <= PM_POOL_USED_BITS, "used_count fits below the flags");

/* Blocks handed out and not taken back (I3). Any thread may read it. */
static inline unsigned pm_pool_used(const pm_pool_t *pool)
{
    return (__atomic_load_n(&pool->used_word, __ATOMIC_RELAXED) & PM_POOL_USED_BITS) +
           __atomic_load_n(&pool->used_mark, __ATOMIC_RELAXED);
}
/* By the owner: pm_pool_put_used next says the pool needs its owner when
 * used_count comes down to `mark` (below used_count; 0: when it empties). A
 * thread reading used_count meanwhile may see the mark moved and the word
 * not yet: the stats' figures are exact when the program is quiescent. */
static inline void pm_pool_set_mark(pm_pool_t *pool, unsigned mark)
{
    unsigned used = pm_pool_used(pool);
    uint16_t flags = pool->used_word & (uint16_t)~PM_POOL_USED_BITS;
    __atomic_store_n(&pool->used_mark, (uint16_t)mark, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->used_word, (uint16_t)((used - mark) | flags), __ATOMIC_RELAXED);
}
static inline bool pm_pool_kept(const pm_pool_t *pool)
{
    return (__atomic_load_n(&pool->used_word, __ATOMIC_RELAXED) & PM_POOL_KEPT) != 0;
}
/* By the owner: kept, pm_pool_put_used says nothing when the pool empties
 * (I4). Cleared by the owner as another pool joins its list, as it leaves
 * the list (pm_pool_set_on_bin_list), and as it carves. */
static inline void pm_pool_set_kept(pm_pool_t *pool, bool kept)
{
    uint16_t word = pool->used_word;
    __atomic_store_n(&pool->used_word,
                     (uint16_t)(kept ? word | PM_POOL_KEPT : word & ~PM_POOL_KEPT),
                     __ATOMIC_RELAXED);
}
static inline bool pm_pool_on_bin_list(const pm_pool_t *pool)
{
    return (pool->used_word & PM_POOL_OFF_LIST) == 0 && !pool->regaining;
}
/* How many blocks a regaining pool takes back before it joins its bin list
 * (I4; heap.c, REGAINING): a sixteenth of its capacity, PM_POOL_REGAIN_MIN
 * at least. One less is the most of its free blocks the slow path cannot
 * see. */
#define PM_POOL_REGAIN_DIVISOR 16
#define PM_POOL_REGAIN_MIN 3
static inline unsigned pm_pool_regain_batch(const pm_pool_t *pool)
{
    unsigned batch = pool->capacity / PM_POOL_REGAIN_DIVISOR;
    return batch > PM_POOL_REGAIN_MIN ? batch : PM_POOL_REGAIN_MIN;
}
/* By the owner, as the pool joins or leaves its bin list: one that leaves
 * it is not kept. */
static inline void pm_pool_set_on_bin_list(pm_pool_t *pool, bool listed)
{
    uint16_t word = pool->used_word;
    __atomic_store_n(&pool->used_word,
                     (uint16_t)(listed ? word & ~PM_POOL_OFF_LIST
                                       : (word | PM_POOL_OFF_LIST) & ~PM_POOL_KEPT),
                     __ATOMIC_RELAXED);
}
/* By the owner, a block taken back: one less used, and true if the pool
 * needs its owner's attention, that is if it is now empty (and not kept),
 * down to its mark, or off its bin list (full until now). As a signed
 * 16-bit word, used_word - 1 is then <= 0: 0 when it emptied or came to
 * its mark on its list (PM_POOL_KEPT keeps it above), negative with
 * PM_POOL_OFF_LIST (used_count was above the mark, so the subtract never
 * overflows). On x86-64 the subtract's own flags answer: one instruction
 * and a branch, where testing the two fields took five. */
static inline bool pm_pool_put_used(pm_pool_t *pool)
{
#if defined(__x86_64__) && !defined(PM_SANITIZED)
    bool needs_owner;
    __asm__("subw $1, %0" : "+m"(pool->used_word), "=@ccle"(needs_owner));
    return needs_owner;
#else
    uint16_t word = (uint16_t)(pool->used_word - 1);
    __atomic_store_n(&pool->used_word, word, __ATOMIC_RELAXED);
    return (int16_t)word <= 0;
#endif
}

static inline pm_arena_t *pm_arena_of(const void *addr)
{
    return (pm_arena_t *)((uintptr_t)addr & ~(uintptr_t)(PM_ARENA_SIZE - 1));
}
/* A pool's position in its arena, from the descriptor's address (without
 * reading it). */
static inline unsigned pm_pool_index_of(const pm_pool_t *pool)
{
    return (unsigned)(((uintptr_t)pool & (PM_ARENA_SIZE - 1)) / sizeof(pm_pool_t));
}
static inline char *pm_pool_start(const pm_pool_t *pool)
{
    char *base = (char *)pm_arena_of(pool);
    size_t offset = (size_t)pm_pool_index_of(pool) * PM_POOL_SIZE;
    return base + (offset < PM_ARENA_HEADER_SIZE ? PM_ARENA_HEADER_SIZE : offset);
}
/* A block's pool's index x 8: the offset of its owner in pool_heap, and,
 * x 8 again, of its descriptor (an address mode's scale): free's fast path
 * finds both from one shift and one mask. */
static inline uintptr_t pm_pool_slot_of(const void *block)
{
    return ((uintptr_t)block >> (PM_POOL_SHIFT - 3)) & ((PM_POOLS_PER_ARENA - 1) * 8);
}
static inline pm_pool_t *pm_pool_of(const void *block)
{
    return (pm_pool_t *)((char *)pm_arena_of(block) + pm_pool_slot_of(block) * 8);
}
/* The pool's owner (I9), NULL when UNUSED. */
static inline struct pm_heap *pm_pool_heap(const pm_pool_t *pool)
{
    return __atomic_load_n(&pm_arena_of(pool)->pool_heap[pm_pool_index_of(pool)],
                           __ATOMIC_RELAXED);
}
/* The pool's class as other threads read it (I9): PM_CLASS_NONE when
 * UNUSED. pool_class holds the class + 1, and 0 for none, so that a slot of
 * the arena space with no arena, which reads as zeros (I13), holds unused
 * pools. Acquire: a reader that sees a class sees the pool set up for it. */
static inline unsigned pm_pool_class_shared(const pm_pool_t *pool)
{
    unsigned stored = __atomic_load_n(&pm_arena_of(pool)->pool_class[pm_pool_index_of(pool)],
                                      __ATOMIC_ACQUIRE);
    return stored == 0 ? PM_CLASS_NONE : stored - 1;
}
/* A pool changes hands (I9): its owner and class, in the descriptor and in
 * the arena header, the classes last, so that a reader that sees the class
 * sees the rest; or, in use, its owner alone (ADOPTION, heap.c), with no
 * write to the class, which the arena lock's holders read. */
static inline void pm_pool_set_heap(pm_pool_t *pool, struct pm_heap *heap)
{
    __atomic_store_n(&pm_arena_of(pool)->pool_heap[pm_pool_index_of(pool)], heap, __ATOMIC_RELAXED);
}
static inline void pm_pool_set_owner(pm_pool_t *pool, struct pm_heap *heap, unsigned class_index)
{
    pm_arena_t *arena = pm_arena_of(pool);
    unsigned index = pm_pool_index_of(pool);
    pm_pool_set_heap(pool, heap);
    __atomic_store_n(&arena->pool_class[index],
                     (uint8_t)(class_index == PM_CLASS_NONE ? 0 : class_index + 1), __ATOMIC_RELEASE);
    __atomic_store_n(&pool->class_index, (uint8_t)class_index, __ATOMIC_RELEASE);
}
/* I11: whether the pool may hold a sampled block. */
static inline bool pm_pool_holds_sampled(const pm_pool_t *pool)
{
    return __atomic_load_n(&pool->sampled_count, __ATOMIC_RELAXED) != 0;
}
/* The bound below which pm_pool_block_below finds the pool's first
 * `blocks` block starts, and nothing else: blocks x the class's step
 * (pm_class_reciprocal). */
static inline uint32_t pm_pool_block_bound(const pm_pool_t *pool, uint32_t blocks)
{
    return blocks * (pool->block_size * pool->reciprocal);
}
/* What fast_free_bound should be: the carved blocks' bound, or 0 while the
 * pool has a purged page or a sampled block. */
static inline uint32_t pm_pool_fast_free_bound(const pm_pool_t *pool)
{
    return pool->purged_pages != 0 || pm_pool_holds_sampled(pool)
               ? 0
               : pm_pool_block_bound(pool, pool->carve_index);
}
/* By the owner, after carving, purging pages or taking them back, and as
 * its sampled blocks come and go. */
static inline void pm_pool_refresh_fast_free(pm_pool_t *pool)
{
    pool->fast_free_bound = pm_pool_fast_free_bound(pool);
}
static inline size_t pm_pool_bytes(unsigned pool_index)
{
    return pool_index == 0 ? PM_POOL_SIZE - PM_ARENA_HEADER_SIZE : PM_POOL_SIZE;
}
/* Its pages may hold RSS (I10). */
static inline bool pm_pool_resident(const pm_pool_t *pool)
{
    return pool->touched_pages != 0;
}

/* ---- free-list links: safe-linking (I12) ------------------------------------
 * A link is stored as next ^ the link's own address ^ a per-process random
 * key, as glibc's safe-linking mixes a tcache link with its address, so a
 * program that writes into a freed block (a use after free, an overflow
 * from its neighbour) turns the link into noise rather than into an
 * address of its choosing, and the check on every pop sees the noise; and a
 * link copied from one free block into another no longer decodes to the
 * same address. The address is free on malloc's side: its check is on
 * next ^ block, which is the stored word ^ the key alone (pm_link_next),
 * two instructions fewer than decoding first; free pays one more. */
/* The per-process words every malloc and free reads, drawn once (pool.c):
 * the link key, and the free tag (below). On a cache line of their own,
 * which no variable another thread writes shares. */
typedef struct pm_block_keys {
    uintptr_t link_key;
    uintptr_t free_tag;
} __attribute__((aligned(PM_CACHE_LINE))) pm_block_keys_t;
_Static_assert(sizeof(pm_block_keys_t) == PM_CACHE_LINE, "pm_block_keys fills its line alone");
PM_HIDDEN extern pm_block_keys_t pm_block_keys;
/* Draws the keys if no thread has: before the first pool is made, and
 * before a heap's chunk cache opens (system.c). */
PM_HIDDEN void pm_block_keys_draw(void);
static inline void pm_block_keys_ready(void)
{
    if (PM_UNLIKELY(__atomic_load_n(&pm_block_keys.link_key, __ATOMIC_ACQUIRE) == 0))
        pm_block_keys_draw();
}
static inline void pm_link_set(pm_block_t *block, const pm_block_t *next)
{
    block->next_encoded =
        (pm_block_t *)((uintptr_t)next ^ (uintptr_t)block ^ pm_block_keys.link_key);
}
static inline pm_block_t *pm_link_get(const pm_block_t *block)
{
    return (pm_block_t *)((uintptr_t)block->next_encoded ^ (uintptr_t)block ^
                          pm_block_keys.link_key);
}
/* A pool free list's link, in *next, and whether it passes the check: NULL
 * or a 16-byte aligned address in the same pool. Blocks of a pool share
 * address / PM_POOL_SIZE (see BLOCK, POOL, ARENA), so one mask on
 * next ^ block tests both, and NULL (next ^ block == block) is tested only
 * when it fails. */
static inline bool pm_link_next(const pm_block_t *block, pm_block_t **next)
{
    uintptr_t apart = (uintptr_t)block->next_encoded ^ pm_block_keys.link_key;
    *next = (pm_block_t *)(apart ^ (uintptr_t)block);
    return PM_LIKELY((apart & ~(uintptr_t)(PM_POOL_SIZE - PM_CLASS_GRANULE)) == 0) ||
           apart == (uintptr_t)block;
}
/* Aborts: a free block's link failed pm_link_next's check. */
PM_HIDDEN PM_NORETURN void pm_pool_corrupt_link(const pm_pool_t *pool, const pm_block_t *block);

/* ---- the free tag (I6) ------------------------------------------------------
 * A free block of a pool holds pm_block_keys.free_tag in its second word,
 * written by free and by carving; malloc writes 0 there as it hands the
 * block out.
 * So free tells a live block from a freed one in the block's own line,
 * which it writes anyway, as glibc's tcache does with its key: a block
 * whose word is not the tag is live (once I7's tests have passed), and one
 * whose word is the tag is free, unless the program put that very value
 * there, which only a read of freed memory could give it: the owner then
 * walks the pool's free list to know (pm_pool_block_free). A live map,
 * a bit per granule in the arena header, did the same on lines of their
 * own, which a program replacing blocks at random missed on every call
 * (bench/results/free-tag.md). A random value of its own, not the link
 * key: a program that reads a freed block learns the tag, not the key. */
static inline bool pm_block_tagged(const void *block)
{
    return ((const pm_block_t *)block)->tag == pm_block_keys.free_tag;
}
static inline void pm_block_set_tag(void *block)
{
    ((pm_block_t *)block)->tag = pm_block_keys.free_tag;
}
static inline void pm_block_clear_tag(void *block)
{
    ((pm_block_t *)block)->tag = 0;
}
/* I7 on free's fast path: whether `block`, an address in the pool's 16 KiB
 * of its arena, starts one of the pool's first n blocks, for `bound` =
 * pm_pool_block_bound(pool, n) (fast_free_bound for pm_pool_fast_block):
 * its offset times the class's multiplier, modulo 2^32, is below it
 * (pm_class_reciprocal says why nothing else is). One multiply and one
 * compare: a compare with the carved end, then Lemire's divisibility test,
 * took three instructions more a free. */
static inline bool pm_pool_block_below(const pm_pool_t *pool, const void *block, uint32_t bound)
{
    uint32_t offset = (uint32_t)(uintptr_t)block - pool->start_low;
    return offset * pool->reciprocal < bound;
}
static inline bool pm_pool_fast_block(const pm_pool_t *pool, const void *block)
{
    return pm_pool_block_below(pool, block, pool->fast_free_bound);
}
/* By the owner: free's fast tests with the carved blocks' bound in place
 * of fast_free_bound. A block of the pool that passes them is live (I6),
 * sampled or not; one that fails takes the exact check
 * (pm_pool_block_free). */
static inline bool pm_pool_block_surely_live(const pm_pool_t *pool, const void *block)
{
    return pool->purged_pages == 0 &&
           pm_pool_block_below(pool, block, pm_pool_block_bound(pool, pool->carve_index)) &&
           !pm_block_tagged(block);
}

/* POOLMALLOC_DEBUG patterns (I12): the bytes of a block just handed out,
 * and of a free block past its link. */
#define PM_DEBUG_FRESH_BYTE 0xCD
#define PM_DEBUG_FREED_BYTE 0xDD

/* pool.c: block operations on one pool, by its owner (or under the
 * service_lock of its ABANDONED heap). */
PM_HIDDEN void pm_pool_init(pm_pool_t *pool, unsigned class_index,
                            struct pm_heap *heap);
/* Puts more blocks on the free list: those of the pages given back
 * (pm_pool_purge_free_pages), else the next stretch of untouched blocks;
 * false if the pool has neither. */
PM_HIDDEN bool pm_pool_carve(pm_pool_t *pool, bool coloured);
/* An empty pool its owner had parked, made a pool of `class_index` (its
 * own class or another). Unless it is of that class already with a free
 * list from block to neighbour, its free list is carved afresh, in
 * address order, over the pages its blocks reached before: those are
 * resident, and so it spans them as before (I4) and is not kept for a lone
 * block while holding more than a page. */
PM_HIDDEN void pm_pool_reuse(pm_pool_t *pool, unsigned class_index, struct pm_heap *heap);
/* malloc_trim, and a sparse pool (heap.c), for an IN USE pool: gives back
 * the OS pages that hold no live block and only carved blocks, and takes
 * the free blocks that start in them off the free list (I3) until
 * pm_pool_carve puts them back. Returns the bytes given back: now, or
 * (batch not NULL) once the caller flushes the batch, which it does before
 * it allocates again, or (`later`) before the pool takes its purged pages
 * back or leaves its heap, the owner's fast path allocating meanwhile:
 * then the pages a free block reaches into from before go now. */
PM_HIDDEN size_t pm_pool_purge_free_pages(pm_pool_t *pool, pm_os_purge_batch_t *batch,
                                          bool later);
/* Whether a pool with `used` blocks in use has at least three quarters of
 * its carved blocks free, and 16 or more. */
static inline bool pm_pool_mostly_free(const pm_pool_t *pool, uint32_t used)
{
    return pool->carve_index >= 4 * used + 16;
}
/* By the owner, as the pool starts serving: its free list linked again,
 * lowest address first, if it is mostly free and its first steps are not
 * from block to neighbour (pool.c, ADDRESS ORDER). */
PM_HIDDEN void pm_pool_order_free_list(pm_pool_t *pool);
static inline void pm_pool_order_if_mostly_free(pm_pool_t *pool)
{
    /* used_word's count, not pm_pool_used: the mark's load made the slow
     * path keep both counts' addresses across its calls, 8 instructions a
     * slow path more in churn-random (pm_pool_order_free_list counts
     * again). */
    if (PM_UNLIKELY(pm_pool_mostly_free(pool, pool->used_word & PM_POOL_USED_BITS)))
        pm_pool_order_free_list(pool);
}
/* A pool is carved coloured while its bin holds no more than this many. */
#define PM_HEAP_COLOURED_POOLS 4
/* Purges the pages of `count` IN USE pools with no live block, together
 * (pm_arena_purge_pools), and starts their carving afresh (I10). */
PM_HIDDEN void pm_pool_purge_empty(pm_pool_t *const *pools, unsigned count);
/* POOLMALLOC_DEBUG (I12): a block leaving a debug_fill pool's free list is
 * checked for writes since it was freed, then filled with the fresh
 * pattern; a block joining it is filled with the freed pattern. */
PM_HIDDEN void pm_pool_debug_reuse(const pm_pool_t *pool, void *block);
PM_HIDDEN void pm_pool_debug_freed(const pm_pool_t *pool, void *block);
/* What a pointer was handed to, for the diagnosis of misuse. */
typedef enum pm_op { PM_OP_FREE, PM_OP_REALLOC, PM_OP_USABLE_SIZE } pm_op_t;
/* Returns the pool of a block inside one of our arenas, after checking I6
 * and I7; on misuse prints what `op` was given and aborts. Safe from any
 * thread for a live block (I9). by_owner: the caller owns the pool (or
 * holds its ABANDONED heap's service_lock), and the check is exact
 * (pm_pool_block_free); another thread's trusts the block's tag. */
PM_HIDDEN pm_pool_t *pm_pool_checked(void *block, pm_op_t op, bool by_owner);
/* I6, exact, by the owner: whether a block start of the pool is not live:
 * never carved, in a purged page, or on the free list. */
PM_HIDDEN bool pm_pool_block_free(const pm_pool_t *pool, const void *block);
/* IDLE OWNERS (heap.c): another thread gives back the pages of a pool in use
 * that only blocks taken off its heap's ring and stack overlap (waiting),
 * and returns them (bit p: page p of the pool); the owner marks them purged
 * before it takes those blocks back. */
PM_HIDDEN unsigned pm_pool_purge_waiting_pages(const pm_pool_t *pool,
                                               bool (*waiting)(const void *block, void *ctx),
                                               void *ctx);
PM_HIDDEN void pm_pool_mark_purged(pm_pool_t *pool, unsigned pages);
/* Whether `addr` lies in a page of the pool given back while it is in use
 * (purged_pages, I3). */
static inline bool pm_pool_page_purged(const pm_pool_t *pool, const void *addr)
{
    size_t page = (size_t)((const char *)addr - pm_pool_start(pool)) / PM_OS_PAGE_SIZE;
    return (pool->purged_pages >> page) & 1;
}
PM_HIDDEN bool pm_pool_is_valid(const pm_pool_t *pool);

/* Giving memory back, the pools' (arena.c) and glibc's heap's (system.c)
 * alike: a collapse is a fall to 1/PM_COLLAPSE_DIVISOR of the peak, given
 * back at once; one that comes back within a purge delay makes the next
 * PM_CYCLE_DELAYS delays a cycle's, when collapses wait like any fall,
 * except one to 1/PM_COLLAPSE_DIVISOR of the cycle's trough, which ends
 * it. */
#define PM_COLLAPSE_DIVISOR 8
#define PM_CYCLE_DELAYS 8

/* How far the retained list (I10) may stand above its cap before the cap
 * purges; it then purges down to the cap, so that a program freeing pools
 * one after another has them purged in runs of neighbours, a madvise call
 * for each run, not one for every pool it frees (arena.c, retained_purge).
 * A quarter of the cap, at most 16 pools (256 KiB): none while collapsed. */
static inline uint64_t pm_retain_slack(uint64_t cap)
{
    return cap / 4 < 16 ? cap / 4 : 16;
}

/* arena.c: the arena directory; takes its own lock. `growing`: the heap
 * holds PM_HEAP_COLOURED_POOLS or more pools of the class and none has a
 * block to hand out, so pools taken next will be carved whole
 * (populate_run). */
PM_HIDDEN pm_pool_t *pm_arena_acquire_pool(unsigned class_index, struct pm_heap *heap,
                                           bool growing);
PM_HIDDEN void pm_arena_release_pool(pm_pool_t *pool);
/* A heap gets an owner (a thread, or the shared heap's users): its home
 * files arenas again. */
PM_HIDDEN void pm_arena_home_open(pm_arena_home_t *home);
/* A heap loses its owner (its thread exits, or a fork leaves it behind):
 * the arenas of its home go back to the directory, where any heap may take
 * a pool from them, and those it still fills follow when one of their
 * pools is released. */
PM_HIDDEN void pm_arena_home_close(pm_arena_home_t *home);
/* The pools in use have collapsed (arena.c's collapse_note) and no pool
 * has been taken since: nothing is retained or parked now. Read without
 * the lock. */
PM_HIDDEN bool pm_arena_collapsed(void);
/* Drops of the pools in use have come within a purge delay of each other
 * (rounds of a cycle, collapse_note in arena.c), lately, as of now_ms
 * (pm_os_coarse_ms): the retained cap serves them, and a heap's sparse
 * pools keep their pages too. Takes the arena lock. */
PM_HIDDEN bool pm_arena_cycling(uint64_t now_ms);
/* Parked pools (I4) are in use but empty, so the collapse leaves them out
 * of its count: heap.c adds each one parked and subtracts each one leaving
 * parked[], under the heap's service_lock, in the heap's `stripe` of the
 * count. Those `in_a_row` (beyond the first of their class in their heap,
 * or leaving a class that keeps one) count against the cap on retained
 * pools (I10). Lock-free. */
#define PM_PARKED_STRIPES 16
PM_HIDDEN void pm_arena_parked_add(unsigned stripe, int64_t delta, bool in_a_row);
/* A pool was parked by a heap that has `occupied_here` pools in use, less
 * its parked, with those the exchange holds (which no thread's heap
 * counts): returns whether the pools in use, less the parked, have
 * collapsed (collapse_note), which makes every parked pool due. */
PM_HIDDEN bool pm_arena_note_parked(uint64_t occupied_here);
/* Purges the retained pools whose delay has run out, or that stand above
 * the cap (I10), in batches; for the dump thread, so that a process that
 * has gone quiet still gives its memory back. */
PM_HIDDEN void pm_arena_decay_tick(void);
/* One batch of pm_arena_decay_tick's purges, if the oldest retained pool's
 * delay has run out by now_ms (pm_os_coarse_ms, the caller's): without the
 * lock, a relaxed load when it has not. For the heaps' housekeeping, which
 * comes often (ALLOCATION TICKS, heap.c). */
PM_HIDDEN void pm_arena_decay_if_due(uint64_t now_ms);
/* malloc_trim: purges every retained pool and unmaps every empty arena, the
 * reserve included. Returns the bytes given back. */
PM_HIDDEN size_t pm_arena_trim(void);
/* How many purges (a range of a purge batch for a run of neighbouring
 * pools, or the unmapping of an arena gone whole) have taken retained
 * pools. */
PM_HIDDEN uint64_t pm_arena_retained_purges(void);
/* How many calls to the kernel have given back pages of pools in use
 * (pm_arena_purge_pages). */
PM_HIDDEN uint64_t pm_arena_in_use_purges(void);
/* Purges the pages of `count` IN USE pools of the caller's (I10) in one
 * batch (pm_os_purge_add), without the directory lock, and counts them. */
PM_HIDDEN void pm_arena_purge_pools(pm_pool_t *const *pools, unsigned count);
/* Purges `bytes` of an IN USE pool at `addr` (page aligned), now or
 * (batch not NULL) into the batch, and counts them. */
PM_HIDDEN void pm_arena_purge_pages(pm_os_purge_batch_t *batch, void *addr, size_t bytes);
/* Adds the arena figures, and walks every pool for the per-class pool
 * counts, free blocks, pool bytes, the arena occupancy histogram, and the
 * blocks in use per class (used_count summed). */
PM_HIDDEN void pm_arena_stats(pm_stats_t *out, uint64_t used[PM_CLASS_COUNT]);
/* Checks I1, I2 and I5, and calls visit(pool) for every IN USE pool (whose
 * validity is the visitor's call); `parked`: how many the heaps hold
 * parked, against pm_arena_parked_add's count. Only when quiescent. */
PM_HIDDEN bool pm_arena_validate(bool (*visit)(const pm_pool_t *pool), uint64_t parked,
                                 uint64_t parked_in_a_row);
/* fork's hold on the arenas: the directory lock, then the registry lock. */
PM_HIDDEN void pm_arena_lock(void);
PM_HIDDEN void pm_arena_unlock(void);

/* ---- heap.c ------------------------------------------------------------------ */
/* One size class of a heap. Frees by the owner are not counted: they are
 * what allocations minus live blocks leave (stats.c), so the fast path of
 * free writes nothing outside the pool. */
typedef struct pm_bin {
    pm_pool_t *pools;              /* pools with room (I4), one serving */
    uint64_t allocated_total;      /* blocks handed out by this heap */
    pm_pool_t *pools_tail;         /* pools that regain room queue up here */
    uint64_t remote_freed_total;   /* blocks of other heaps freed by this thread */
    uint64_t remote_collected_total; /* blocks taken back from remote_free */
    uint64_t pool_count;           /* IN USE pools owned */
    /* The pool of the list malloc's fast path takes blocks from, anywhere
     * on it (heap.c, bin_serve_head), or pm_pool_dry when there is none:
     * never NULL, so the fast path tests only the free list. */
    pm_pool_t *serving;
    /* Pools of the class sent back to their arenas for want of room to
     * park them since the class last took one from them (heap.c, PARKING
     * IN A ROW). */
    uint32_t park_refused;
    /* Of the pools on the list, those that are sparse (heap.c, SPARSE
     * POOLS): two or more, and a quarter of pool_count, the heap is
     * letting go of the class at random (EXCHANGE). */
    uint32_t sparse_count;
} __attribute__((aligned(PM_CACHE_LINE))) pm_bin_t;
_Static_assert(sizeof(pm_bin_t) == PM_CACHE_LINE, "a bin is one cache line");
/* A pool with no free block and no owner, never written: what a bin with
 * no pool serves. */
PM_HIDDEN extern pm_pool_t pm_pool_dry;
#define PM_BINS_INITIALIZER {[0 ... PM_CLASS_COUNT - 1] = {.serving = &pm_pool_dry}}

typedef enum pm_heap_state { PM_HEAP_OWNED, PM_HEAP_ABANDONED, PM_HEAP_ORPHANED } pm_heap_state_t;

/* Slots of a heap's remote ring (8 KiB, its pages touched only as they
 * are used): a consumer thread frees that many blocks before the owner
 * collects, in the usual batches, before a freer must spill the ring into
 * a parcel (before 2026-12-03, overflow onto the stack).
 * The owner collects when a bin runs dry, and a producer's bins run dry
 * about as often as a few hundred frees come in: with 512 slots, most of
 * prodcons' frees overflowed onto the stack, whose links the owner reads
 * from blocks another core wrote, and checks whole. prodcons, 9
 * alternating runs: 512 slots 0.285 s, 1024 0.253 s, 2048 0.228 s; peak
 * RSS (medians of 7) 2708, 2704 and 2876 KiB: more blocks in flight are
 * more memory the producer cannot reuse yet, so 1024. */
#define PM_REMOTE_RING 1024

/* The glibc path's counters, per heap like the bins' (usable sizes). */
typedef struct pm_system_counters {
    uint64_t allocated_total, freed_total;
    uint64_t allocated_bytes_total, freed_bytes_total;
} pm_system_counters_t;

/* The glibc path's chunk cache (system.c, THE CHUNK CACHE): a thread's
 * freed glibc chunks of 513..262,144 usable bytes wait in its heap, by size
 * class (8 a doubling), for its next request of their class that they
 * hold, up to system_cache_room[class] chunks a class and
 * system_cache_bytes_max in all: PM_SYSTEM_CACHE_BYTES, or
 * PM_SYSTEM_CACHE_GROWN_BYTES once the cache has grown. */
#define PM_SYSTEM_CACHE_MAX ((size_t)256 << 10) /* the largest request it serves */
#define PM_SYSTEM_CACHE_CLASSES 72
#define PM_SYSTEM_CACHE_BYTES ((uint64_t)1 << 20)       /* a heap's, at first */
#define PM_SYSTEM_CACHE_GROWN_BYTES ((uint64_t)4 << 20) /* a grown one's */
/* The grown caches' bytes past PM_SYSTEM_CACHE_BYTES, process-wide, at most. */
#define PM_SYSTEM_CACHE_GROWN_TOTAL ((uint64_t)32 << 20)

/* Blocks waiting for an OWNED heap's owner as addresses (heap.c, IDLE
 * OWNERS). */
typedef struct pm_heap_parcel {
    struct pm_heap_parcel *next;
    uint32_t blocks, marks;
    bool marked; /* marks were written (from the back: its last page) */
    uint32_t entry[];
} pm_heap_parcel_t;
#define PM_HEAP_PARCEL_BYTES ((size_t)256 * 1024) /* mapped, touched as filled */

typedef struct pm_heap {
    /* First: a bin's address is then the heap's plus class x 64, with no
     * offset to add on malloc's fast path. */
    pm_bin_t bins[PM_CLASS_COUNT]; /* the owner's, never written by others */
    /* Bytes to allocate until the heap's next tick (ALLOCATION TICKS,
     * heap.c): a sample is due then too, unless tick_only. */
    int64_t tick_countdown;
    bool tick_only;
    /* The owner's: the bytes from one tick to the next, from
     * PM_HEAP_TICK_MIN_BYTES to PM_HEAP_TICK_BYTES, and when the last tick
     * was (pm_os_coarse_ms). */
    int64_t tick_bytes;
    uint64_t tick_ms;
    uint64_t sample_rng; /* the sampler's draws (profile.c) */
    pm_system_counters_t system;   /* likewise */
    /* Net bytes of the glibc path not yet added to the process-wide figure
     * (pm_system_settle), which they join once past PM_SYSTEM_SETTLE_BYTES
     * either way, at a free or a tick: no shared write on every large
     * request. */
    int64_t system_unsettled;
    /* The owner's: the chunk cache. Per class, the chunk freed last
     * (linked as pool blocks are, I12; one more class, always empty, above
     * the last), its glibc chunk size in 16-byte units (0: none), and how
     * many more the class may take (32 at most; 0 in a heap of no thread):
     * arrays, as a 16-byte pair a class took libpoolmalloc.so's .data,
     * which holds three heaps, a page more. And the usable bytes it
     * holds. */
    void *system_cache[PM_SYSTEM_CACHE_CLASSES + 1];
    uint16_t system_cache_head_units[PM_SYSTEM_CACHE_CLASSES];
    uint8_t system_cache_room[PM_SYSTEM_CACHE_CLASSES];
    uint64_t system_cached_bytes;
    /* The most it may hold (0: no cache), and since the owner's last tick
     * the requests it could not serve and the chunks it had no room for. */
    uint64_t system_cache_bytes_max;
    uint32_t system_cache_misses, system_cache_overflows;
    /* At the owner's ticks: the glibc path's allocations it last saw, and
     * since when (pm_system_cache_tick). */
    uint64_t system_cache_seen, system_cache_seen_ms;
    /* The owner's (or its service_lock holder's), for SPARSE POOLS
     * (heap.c): its pools in use, the parked ones left out (the bins'
     * pool_count summed); the most of them since pool_peak_ms; those
     * marked sparse; and whether a pool that comes down to its mark gives
     * back its pages with no live block. */
    uint64_t pool_total;
    uint64_t pool_peak;
    uint64_t pool_peak_ms;
    uint64_t sparse_pools;
    /* Since purging_sparse last turned on (at sparse_on_ms): pools that
     * gave back pages, and those of them that then emptied or took their
     * pages back. Until sparse_quiet_until_ms the heap does not turn
     * purging_sparse: its last turn was in vain (a cycle, heap.c). */
    uint32_t sparse_purged, sparse_purged_ended;
    uint64_t sparse_on_ms, sparse_quiet_until_ms;
    /* Since when half of its peak has been sparse, waiting for a sweep (0:
     * not waiting), and the wait's number, which a pool's sparse_epoch
     * other than it dates from before the wait (heap_sweep_sparse). */
    uint64_t sparse_wait_ms;
    uint8_t sparse_epoch;
    uint8_t purging_sparse; /* SPARSE_OFF, SPARSE_ON, SPARSE_SPENT (heap.c) */
    /* The owner's: pages its sparse pools gave back at their marks, not yet
     * given to the kernel (heap_flush_sparse_purges says until when). */
    pm_os_purge_batch_t sparse_batch;
    struct pm_heap *next_heap;     /* every heap ever made */
    struct pm_heap *next_abandoned;
    /* ABANDONED: until when its kept pools (its bins' empty ones, and the
     * parked ones) wait with their pages for a thread to adopt it; 0 once
     * given back, or adopted. Under the heap directory lock. */
    uint64_t kept_until_ms;
    /* Held while an ABANDONED heap is worked on, and over parked[]. On the
     * first page of the heap's slab, or in pm_fork_locks for the shared
     * heap: pages a fork child gets zeroed (pm_fork_locks_t says why). */
    pm_lock_t *service_lock;
    /* Per class, the newest of the empty pools carved past their first
     * page that the bin set aside (I4), linked by their `next`: the owner
     * takes them back on its slow path, newest first, or any thread gives
     * one back to its arena once it has waited POOLMALLOC_PURGE_DELAY
     * (heap_release_parked). Changed only under service_lock, as is
     * parked_count, how many there are in all; the owner glances at both
     * without it. */
    _Atomic(pm_pool_t *) parked[PM_CLASS_COUNT];
    _Atomic unsigned parked_count;
    /* Which of the arenas' stripes of parked counts it adds to
     * (pm_arena_parked_add): set as it is made. */
    unsigned parked_stripe;
    /* Parked pools beyond a class's first that the heap may keep (heap.c,
     * PARKING IN A ROW): raised by the owner, lowered by whoever gives
     * back its parked pools. */
    _Atomic unsigned park_allowance;
    /* By the owner: pools it sent back to their arenas for want of
     * parking, and when it last did. */
    unsigned park_refused;
    uint64_t park_refused_ms;
    /* By the owner, for the EXCHANGE (heap.c): the classes it gave pools
     * of since exchange_gave_ms, and those it gives none of until a purge
     * delay after exchange_cycle_ms (it took pools of them again soon
     * after giving some up: a cycle). A bit a class. */
    uint32_t exchange_gave, exchange_cycling;
    uint64_t exchange_gave_ms, exchange_cycle_ms;
    /* The arenas its pools come from first (arena.c, under the directory
     * lock): on lines of their own, which a thread releasing a pool into
     * one of them writes. */
    _Alignas(PM_CACHE_LINE) pm_arena_home_t arena_home;
    /* Written by other threads: on its own cache line. */
    _Alignas(PM_CACHE_LINE) _Atomic(pm_block_t *) remote_free; /* the ring's overflow */
    _Atomic int state;                 /* pm_heap_state_t */
    _Atomic uint64_t remote_tail;      /* ring positions claimed by freers */
    /* Blocks another thread took from the ring and the stack of this heap
     * while it was OWNED (IDLE OWNERS, heap.c), or from its full ring
     * (remote_ring_spill), for its owner to take back; and one its owner
     * emptied, kept for the next (heap.c, parcel_keep_spare). */
    _Atomic(pm_heap_parcel_t *) parcels;
    _Atomic(pm_heap_parcel_t *) spare_parcel;
    /* OWNED, with blocks waiting: remote_collections as a freer or the walk
     * of the heaps last saw it change, and when (0: none seen waiting).
     * Blocks left waiting a purge delay past that, with no collection, have
     * the pages under them given back (IDLE OWNERS, heap.c). */
    _Atomic uint64_t idle_seen_collections, idle_seen_ms;
    /* Written by whoever collects (under service_lock, the owner too),
     * read by freers to see the room left. */
    _Alignas(PM_CACHE_LINE) _Atomic uint64_t remote_head; /* next position to take */
    /* Collections that took something, counted by the collector: the walk
     * of the heaps tells an owner that has stopped collecting by it. */
    _Atomic uint64_t remote_collections;
    /* The ring: position p's block, once published, in slot
     * p % PM_REMOTE_RING; NULL while unclaimed or not yet written. Set as
     * the heap is made and never changed; on remote_head's line, which
     * freers and collectors read first. A thread's heap has its ring just
     * after it (heap_create). The shared heap's and the exchange's are
     * arrays in .bss, whose pages become resident only once written:
     * inside those heaps, in .data, their 8 KiB each were resident in
     * every process. pm_heap_empty, which owns no pool, has none (NULL). */
    _Atomic(pm_block_t *) *remote_ring;
} pm_heap_t;

/* SPARSE POOLS (heap.c): a pool's first mark is a quarter of its blocks,
 * at most PM_SPARSE_MARK_MAX; a heap gives back the free pages of its
 * sparse pools only once it holds PM_SPARSE_MIN_POOLS pools or more. */
#define PM_SPARSE_MARK_MAX 16
#define PM_SPARSE_MIN_POOLS 16

/* The calling thread's heap; pm_heap_empty until its first allocation. */
PM_HIDDEN extern __thread pm_heap_t *pm_thread_heap __attribute__((tls_model("initial-exec")));
PM_HIDDEN extern pm_heap_t pm_heap_empty;

/* A block of the class from `heap`, the calling thread's (pm_thread_heap),
 * whose fast path found none at hand; if that is pm_heap_empty, the thread
 * takes a heap first (or the shared heap serves it). NULL if no pool could
 * be had (no arena could be mapped) or while the thread unwinds for a
 * sample (I11): the caller goes to glibc. */
PM_HIDDEN void *pm_heap_alloc_slow(pm_heap_t *heap, unsigned class_index);
/* The bytes a heap allocates between two ticks: at most, and at least
 * (ALLOCATION TICKS, heap.c). */
#define PM_HEAP_TICK_BYTES ((int64_t)256 << 10)
#define PM_HEAP_TICK_MIN_BYTES ((int64_t)4 << 10)
/* pm_heap_tick for a small block, from malloc's fast path, which tail-calls
 * it: returns the block. */
PM_HIDDEN __attribute__((returns_nonnull)) void *pm_heap_tick_small(pm_heap_t *heap, void *block,
                                                                   size_t counted);
/* After pm_options_init: under POOLMALLOC_DEBUG, the calling thread gives up
 * the heap it may have made before (I12). */
PM_HIDDEN void pm_heap_apply_debug(void);
/* Frees a block of ours (pm_registry_contains) as its owner or as a remote
 * free, with every check: free's path once its fast test failed, given the
 * caller's heap and the block's pool, which that test read. */
PM_HIDDEN void pm_heap_free(void *block, pm_heap_t *me, pm_pool_t *pool);
/* After the fast path freed into a pool that was full or is now empty. */
PM_HIDDEN void pm_heap_pool_regained(pm_heap_t *heap, pm_pool_t *pool);

/* ---- profile.c: allocation-site profiling ------------------------------------- */
#define PM_PROFILE_DEPTH 32
#define PM_PROFILE_SITES_MAX 16384 /* distinct stacks; samples of more are dropped */
typedef struct pm_profile_site {
    uint64_t hash;
    uint32_t depth; /* frames used */
    uint32_t samples;
    double alloc_bytes, alloc_count; /* estimated from the samples */
    double live_bytes, live_count;
    void *frames[PM_PROFILE_DEPTH];
} pm_profile_site_t;

typedef struct pm_profile_summary {
    uint64_t rate_bytes, sites, samples, dropped;
} pm_profile_summary_t;

/* I11 (profile.c): a sampled block has a record until it is freed, and its
 * bit in pm_profile_filter is set, so a free (of a glibc block too) finds
 * the record without the lock for nearly every other block. A sampled
 * block of a pool is counted by its pool's sampled_count, and while that
 * is not 0, free's fast path passes the pool's blocks on to the full path
 * (fast_free_bound, I6); the owner drops the record when it takes the block
 * back (heap_take_back), at the free or when it collects it from its
 * remote ring or stack; so a second free finds the block free and no
 * record. With a live bit per block, which a sampled block had clear, the
 * pool's other blocks kept the fast path; now they take a shortcut at the
 * top of pm_heap_free (heap.c): profiling costs churn 1.6% more
 * instructions, where it cost 0.6% with the bit
 * (bench/results/free-tag.md).
 * While a thread unwinds for a sample, its heap is the empty one and its
 * allocations go to glibc unsampled. */
PM_HIDDEN void pm_profile_init(void);
/* Set once, when profiling starts (before any block is sampled), and
 * never cleared. */
PM_HIDDEN extern bool pm_profile_on;
static inline bool pm_profile_enabled(void)
{
    return pm_profile_on;
}
PM_HIDDEN void pm_profile_heap_init(pm_heap_t *heap);
/* Set while this thread unwinds: its allocations go to glibc, unsampled.
 * Read inline: malloc's slow path asks on every small request. */
PM_HIDDEN extern __thread bool pm_profile_unwinding_now __attribute__((tls_model("initial-exec")));
static inline bool pm_profile_unwinding(void)
{
    return pm_profile_unwinding_now;
}
/* A sample of `block`, of `size` bytes, is due: `counted` bytes were taken
 * from the heap's countdown for it (the bytes asked for, on malloc's fast
 * path). Records it and draws the next countdown into tick_countdown, for
 * pm_heap_tick to end at a tick. */
PM_HIDDEN void pm_profile_sample(pm_heap_t *heap, void *block, size_t size, size_t counted);
/* The bytes until the heap's next sample, drawn afresh (INT64_MAX when
 * profiling is off). */
PM_HIDDEN int64_t pm_profile_draw(pm_heap_t *heap);
/* The glibc path's sampling for a thread with no heap of its own, which
 * keeps a countdown of its own. */
PM_HIDDEN void pm_profile_sample_heapless(void *block, size_t usable);

/* "Might this block have been sampled?", without the lock: one bit per
 * hash of the address in an 8 KiB filter (L1-sized), set while a sampled
 * block with that hash is live (profile.c counts them). No false negative
 * for a live sampled block: its bit was set before the block was handed
 * out, and a free of it comes after that. A false positive costs one
 * locked lookup. All zero while profiling is off. */
#define PM_PROFILE_FILTER_BITS 16 /* 65536 bits */
PM_HIDDEN extern uint64_t pm_profile_filter[((size_t)1 << PM_PROFILE_FILTER_BITS) / 64];
/* Another multiplier than the sample table's (profile.c), so blocks that
 * share a bit do not also crowd one probe run. */
static inline size_t pm_profile_filter_index(const void *block)
{
    return (size_t)(((uintptr_t)block >> 4) * 0xff51afd7ed558ccdull >> (64 - PM_PROFILE_FILTER_BITS));
}
static inline bool pm_profile_maybe_sampled(const void *block)
{
    size_t f = pm_profile_filter_index(block);
    return (__atomic_load_n(&pm_profile_filter[f / 64], __ATOMIC_RELAXED) >> (f % 64)) & 1;
}
/* Checks I11's tables: every record reachable from its home slot and
 * naming a site, its filter bit set, a filter bit set iff some record
 * hashes to it, the table at most half full. Only when quiescent. */
PM_HIDDEN bool pm_profile_validate(void);
/* Drops the block's record, if it has one, and says whether it had one
 * (I11). Takes the lock. */
PM_HIDDEN bool pm_profile_drop(void *block);
/* Whether a glibc block leaving the program's hands may have a record to
 * drop. The flag first: with profiling off, a load and a branch, not the
 * filter's hash (every realloc of a glibc block asks). */
static inline bool pm_profile_free_may_drop(const void *block)
{
    return PM_UNLIKELY(pm_profile_on) && pm_profile_maybe_sampled(block);
}
/* A glibc block leaving the program's hands, before glibc can hand its
 * address out again: the filter, then the record only if the bit is set.
 * (A pool block's record goes when its owner takes it back, I11.) */
static inline void pm_profile_free(void *block)
{
    if (pm_profile_free_may_drop(block))
        pm_profile_drop(block);
}
/* The top sites, largest first by live or by allocated bytes (only those
 * with sampled blocks still live if leaks_only); returns how many. */
PM_HIDDEN size_t pm_profile_top(pm_profile_site_t *out, size_t capacity, bool by_live,
                                bool leaks_only, pm_profile_summary_t *summary);
PM_HIDDEN void pm_profile_format_frame(pm_buf_t *b, const void *frame);
/* Held while the thread runs code under the loader's list lock (a
 * dl_iterate_phdr callback, which may allocate): no sample is taken then.
 * A thread's first unwind makes glibc allocate libunwind's thread-local
 * storage (libunwind is dlopen'ed) under the loader's TLS lock, which
 * dlopen holds while it waits for the list lock: a deadlock. Nests. */
PM_HIDDEN void pm_profile_hold_samples(bool hold);
/* The name a frame gets when sampled: what dladdr would say of it, found
 * without the loader's main lock (profile.c). */
PM_HIDDEN void pm_profile_frame_text(pm_buf_t *b, const void *frame);
/* The tables' lock, a leaf (taken last), held across fork (pm_fork_*). */
PM_HIDDEN void pm_profile_lock(void);
PM_HIDDEN void pm_profile_unlock(void);
/* The unwinders' lock, taken first across fork: no thread is inside
 * libunwind when the child is made (see LOCKING). */
PM_HIDDEN void pm_profile_unwind_lock(void);
PM_HIDDEN void pm_profile_unwind_unlock(void);
/* Draws a sampling countdown for every heap made before profiling began. */
PM_HIDDEN void pm_heap_reset_sampling(void);

/* The fast path for `size` bytes, 1..PM_SMALL_MAX, in `heap`, the calling
 * thread's (pm_thread_heap, read once by the caller: the stores below may
 * alias it for the compiler): pop the serving pool's free list, or NULL if it
 * has none (then pm_heap_alloc_slow finds room). Inlined into pm_malloc. */
static inline void *pm_heap_alloc_fast(pm_heap_t *heap, size_t size)
{
    /* &heap->bins[(size - 1) / 16], as the size rounded down to the granule
     * times 4 (a bin is 64 bytes): an and and an lea, where the class index
     * took two shifts and a move. */
    size_t granules_x16 = (size - 1) & ~(size_t)(PM_CLASS_GRANULE - 1);
    pm_bin_t *bin =
        (pm_bin_t *)((char *)heap->bins + granules_x16 * (sizeof(pm_bin_t) / PM_CLASS_GRANULE));
    pm_pool_t *pool = bin->serving;
    pm_block_t *block = pool->free_list;
    if (PM_LIKELY(block != NULL)) {
        pm_block_t *next;
        if (PM_UNLIKELY(!pm_link_next(block, &next)))
            pm_pool_corrupt_link(pool, block);
        pool->free_list = next;
        /* The next malloc's link, read now, while the program works: a
         * block another thread freed, or one a large heap has long left,
         * is a cache miss, and its link is the fast path's only load that
         * depends on the previous one (Linux's SLUB does the same,
         * prefetch_freepointer). mstress-like probe: 0.38 -> 0.29 s
         * (jemalloc 0.19); churn-random and server unchanged; one
         * instruction a malloc (bench/results/big-heap-random.md). */
        __builtin_prefetch(next);
        PM_COUNTER_ADD(pool->used_word, 1); /* I3: used_count + 1 */
        pm_block_clear_tag(block); /* I6: live */
        PM_COUNTER_ADD(bin->allocated_total, 1);
        /* Sampled by the bytes asked for, which are at hand (the block's
         * size would cost two instructions more); the sample's weight is
         * figured on the same bytes (profile.c). */
        if (PM_UNLIKELY((heap->tick_countdown -= (int64_t)size) < 0))
            return pm_heap_tick_small(heap, block, size);
        return block;
    }
    return NULL;
}
_Static_assert(sizeof(pm_bin_t) % PM_CLASS_GRANULE == 0, "pm_heap_alloc_fast indexes bins by size");

/* A block for `size` bytes (0 counts as 1), fast path first. */
static inline void *pm_heap_alloc(size_t size)
{
    size += size == 0;
    pm_heap_t *heap = pm_thread_heap;
    void *block = pm_heap_alloc_fast(heap, size);
    return PM_LIKELY(block != NULL) ? block : pm_heap_alloc_slow(heap, pm_class_of_nonzero(size));
}

/* The fast paths' test for a live block of `heap`: its pool is the heap's
 * (read from the arena header, I9), it starts a block free may take fast
 * (I7, pm_pool_fast_block) and it does not hold the free tag (I6).
 * Whatever fails takes the full check, which tells misuse from a sampled
 * block (I11), or from a live block that happens to hold the tag. */
static inline bool pm_heap_owns_live(const pm_heap_t *heap, pm_pool_t *pool, const void *block)
{
    /* pm_pool_heap(pool), from the block's slot: through the descriptor's
     * address GCC 12 did not see the slot again, and free's fast path took
     * 5 instructions more. */
    void *const *owner = (void *const *)((const char *)pm_arena_of(block)->pool_heap +
                                         pm_pool_slot_of(block));
    return pm_relaxed_eq(owner, heap) && pm_pool_fast_block(pool, block) && !pm_block_tagged(block);
}

/* A live block of `heap`'s pool back on the pool's free list, tagged:
 * free's fast path once its checks pass. */
static inline void pm_heap_push_free(pm_heap_t *heap, pm_pool_t *pool, void *block)
{
    pm_link_set(block, pool->free_list);
    pm_block_set_tag(block);
    pool->free_list = block;
    if (PM_UNLIKELY(pm_pool_put_used(pool)))
        pm_heap_pool_regained(heap, pool);
}

/* The fast path of free: a live block of the calling thread's own heap goes
 * straight back to its pool's free list. */
static inline void pm_heap_free_fast(void *block)
{
    pm_heap_t *heap = pm_thread_heap;
    pm_pool_t *pool = pm_pool_of(block);
    if (PM_LIKELY(pm_heap_owns_live(heap, pool, block))) {
        pm_heap_push_free(heap, pool, block);
        return;
    }
    pm_heap_free(block, heap, pool);
}

/* The block size of a live block of ours; misuse is diagnosed as `op`. */
PM_HIDDEN size_t pm_heap_block_size(void *block, pm_op_t op);
/* The same, by free's fast test for a live block of the calling thread's
 * heap (pm_heap_owns_live), or by pm_heap_block_size for anything else:
 * realloc and malloc_usable_size are mostly of the caller's own blocks, and
 * the full check took 40 instructions a realloc more
 * (bench/results/calloc-realloc.md). */
static inline size_t pm_heap_usable_size(void *block, pm_op_t op)
{
    pm_pool_t *pool = pm_pool_of(block);
    if (PM_LIKELY(pm_heap_owns_live(pm_thread_heap, pool, block)))
        return pool->block_size;
    return pm_heap_block_size(block, op);
}
/* Adds the heaps' counters: per class allocated_total, the system path,
 * the heap counts; and per class, the blocks waiting in remote rings and
 * stacks. */
PM_HIDDEN void pm_heap_stats(pm_stats_t *out, uint64_t waiting[PM_CLASS_COUNT]);
/* The system path's counting, for a thread that has no heap: it takes one if
 * it may, else the shared counters count it. */
PM_HIDDEN void pm_heap_count_system_heapless(size_t allocated_bytes, size_t freed_bytes);
/* The glibc path's counting in a heap (not pm_heap_empty). */
static inline void pm_heap_count_system_alloc(pm_heap_t *heap, size_t usable)
{
    PM_COUNTER_ADD(heap->system.allocated_total, 1);
    PM_COUNTER_ADD(heap->system.allocated_bytes_total, usable);
    heap->system_unsettled += (int64_t)usable;
}
static inline void pm_heap_count_system_free(pm_heap_t *heap, size_t usable)
{
    PM_COUNTER_ADD(heap->system.freed_total, 1);
    PM_COUNTER_ADD(heap->system.freed_bytes_total, usable);
    heap->system_unsettled -= (int64_t)usable;
}
static inline void pm_count_system_alloc(size_t usable)
{
    pm_heap_t *heap = pm_thread_heap;
    if (PM_LIKELY(heap != &pm_heap_empty))
        pm_heap_count_system_alloc(heap, usable);
    else
        pm_heap_count_system_heapless(usable, 0);
}
static inline void pm_count_system_free(size_t usable)
{
    pm_heap_t *heap = pm_thread_heap;
    if (PM_LIKELY(heap != &pm_heap_empty))
        pm_heap_count_system_free(heap, usable);
    else
        pm_heap_count_system_heapless(0, usable);
}
/* malloc_trim's part in the heaps: the calling thread's, every abandoned
 * heap's and the shared heap's empty pools, and every heap's parked ones,
 * go back to their arenas, and the same heaps' other pools give back their
 * pages with no live block (pm_pool_purge_free_pages). Returns whether
 * anything went. */
PM_HIDDEN bool pm_heap_trim(void);
/* Walks the heaps when that may be due (a delay after the last walk, when
 * the first pool it left parked becomes due, or while blocks wait in an
 * ABANDONED heap's ring; at most every 10 ms): gives back the parked pools
 * (I4) that have waited POOLMALLOC_PURGE_DELAY, and collects what waits in
 * ABANDONED heaps, and relieves idle owners (IDLE OWNERS, heap.c) but the
 * walker's own heap, if due by now_ms (pm_os_coarse_ms, the caller's).
 * Three relaxed loads when not. Called by an owner taking or giving back a
 * pool or at its tick, with its heap, and by the dump thread's tick, with
 * NULL (the thread shares the thread pointer, and so pm_thread_heap, of the
 * thread that made it: the main thread's heap is not its own); with no
 * lock held. */
PM_HIDDEN void pm_heap_release_parked_if_due(const pm_heap_t *walker, uint64_t now_ms);
/* A heap's tick (ALLOCATION TICKS, heap.c), its countdown just run out for
 * `block`, of `size` bytes, after `counted` bytes were taken for it: the
 * sample due, if one is, then the housekeeping that is due, and the next
 * countdown. Returns the block. */
PM_HIDDEN void *pm_heap_tick(pm_heap_t *heap, void *block, size_t size, size_t counted);
/* Sets the heap's countdown to `sample_in` bytes (the sampler's draw;
 * INT64_MAX for none), or to the next tick if that comes first. */
PM_HIDDEN void pm_heap_set_countdown(pm_heap_t *heap, int64_t sample_in);
/* Checks I2-I8 over every arena and heap. Only when quiescent. */
PM_HIDDEN bool pm_heap_validate(void);

/* ---- system.c: the glibc path ---------------------------------------------- */
PM_HIDDEN void *pm_system_malloc(size_t size);
PM_HIDDEN void *pm_system_calloc(size_t count, size_t size);
PM_HIDDEN void *pm_system_realloc(void *ptr, size_t size);
PM_HIDDEN void *pm_system_memalign(size_t alignment, size_t size);
PM_HIDDEN void *pm_system_valloc(size_t size);
PM_HIDDEN void *pm_system_pvalloc(size_t size);
PM_HIDDEN void pm_system_free(void *ptr);
PM_HIDDEN size_t pm_system_usable_size(void *ptr);
PM_HIDDEN int pm_system_mallopt(int param, int value);
/* realloc's rule for a block resized within its usable size, on both
 * paths (alloc.c, system.c): it stays where it is unless that would leave
 * more than a quarter of it unused (obmalloc's rule: copying costs more
 * than slack). */
static inline bool pm_realloc_keeps(size_t usable, size_t size)
{
    return 4 * size > 3 * usable;
}
/* The largest usable size pm_realloc_keeps for `size` (its inverse). */
static inline size_t pm_realloc_kept_max(size_t size)
{
    return (4 * size - 1) / 3;
}
/* realloc's room to grow, on both paths (alloc.c, system.c): a block that
 * grows past its usable size by less than an eighth takes a quarter more
 * than it held, as under tcmalloc; one that grows by more what was asked:
 * a program that grows its buffers geometrically (CPython's lists by an
 * eighth, C++ vectors double) has made its own room, and a quarter more on
 * top took a list-building script 7% more peak RSS. Precondition: size >
 * old_usable. */
static inline size_t pm_realloc_grown_size(size_t old_usable, size_t size)
{
    return size - old_usable < old_usable / 8 ? old_usable + old_usable / 4 : size;
}
/* Once poolmalloc trims glibc's heap itself (pm_system_set_trim): glibc's
 * own trim of its heap's top waits for 1 MiB free there, and its dynamic
 * mmap threshold is kept in its stead, unless the program tunes glibc
 * itself (system.c). Called by the preload shim at start-up. */
PM_HIDDEN void pm_system_tune_glibc(void);
/* A heap's unsettled bytes beyond this, either way, join the process-wide
 * figure the glibc trim is decided on. */
#define PM_SYSTEM_SETTLE_BYTES ((int64_t)256 << 10)
/* Settles the heap's unsettled bytes if they are a step or more either
 * way: by the glibc path, and by the heap's owner at each tick (malloc's
 * fast path does not test them). */
PM_HIDDEN void pm_system_settle_heap(pm_heap_t *heap);
/* pm_system_cache_open gives a new heap's chunk cache its room in every
 * class. pm_system_cache_flush gives every chunk a cache holds back to
 * glibc: by its owner, as its thread exits, and before the owner trims
 * glibc's heap. */
PM_HIDDEN void pm_system_cache_open(pm_heap_t *heap);
PM_HIDDEN void pm_system_cache_flush(pm_heap_t *heap);
/* At the owner's tick, `now_ms`: a cache whose thread has made no request
 * of the glibc path for a purge delay goes back to glibc. */
PM_HIDDEN void pm_system_cache_tick(pm_heap_t *heap, uint64_t now_ms);
/* How many threads' caches have grown (to PM_SYSTEM_CACHE_GROWN_BYTES) and
 * not been given back; in a fork child, the parent's other threads' too. */
PM_HIDDEN uint64_t pm_system_caches_grown(void);
/* From now on every free on the glibc path takes its slow path, which
 * drops the block's profile record: called as profiling starts, before
 * any block is sampled. */
PM_HIDDEN void pm_system_free_profiled(void);
/* Adds `delta` bytes to the glibc path's process-wide live figure, notes
 * when that has fallen to half of the most it was since glibc's heap was
 * last trimmed, and trims at once when it has fallen to an eighth (glibc
 * gives back only the top of its heap by itself). */
PM_HIDDEN void pm_system_settle(int64_t delta);
/* Trims glibc's heap if its live bytes have stayed halved for the purge
 * delay: called by the settles and by an owner taking or giving back a
 * pool (heap.c), never by the dump thread (dump.c says why). One relaxed
 * load when no trim is pending. */
PM_HIDDEN void pm_system_trim_if_due(void);
/* glibc's malloc_trim, which the malloc_trim the shim exports hides: the
 * shim finds it at start-up and hands it over; until then (and in programs
 * that link the core alone and do not) glibc's heap is not trimmed. */
PM_HIDDEN void pm_system_set_trim(int (*glibc_malloc_trim)(size_t pad));
/* malloc_trim's part: glibc's malloc_trim(pad) now. Returns glibc's answer
 * (1 if it gave memory back). */
PM_HIDDEN int pm_system_trim(size_t pad);

/* ---- alloc.c: malloc's and free's front doors --------------------------------
 * Inline, for pm_malloc and pm_free and for the preload shim's malloc and
 * free alike: the exported symbols are then the whole fast path, not a jump
 * to it (one instruction each, two a malloc+free pair). */
/* Everything but the fast path: malloc(0), a bin with no room at hand, the
 * glibc path. Out of line so that malloc stays a leaf. */
PM_HIDDEN void *pm_malloc_slow(size_t size);
/* malloc of `size` bytes, 1..PM_SMALL_MAX, whose fast path found `heap`'s
 * bin with no room at hand: the heap's slow path, or glibc's if no pool
 * could be had. The fast path hands its heap over, where pm_malloc_slow
 * read it again and tested the size twice more: 8 instructions of every
 * pool switch (bench/results/slow-path-switch.md). */
PM_HIDDEN void *pm_malloc_missed(pm_heap_t *heap, size_t size);
static inline void *pm_malloc_inline(size_t size)
{
    /* size - 1 wraps for 0, which takes the slow path like large sizes. */
    if (PM_LIKELY(size - 1 < PM_SMALL_MAX)) {
        pm_heap_t *heap = pm_thread_heap;
        void *block = pm_heap_alloc_fast(heap, size);
        if (PM_LIKELY(block != NULL))
            return block;
        return pm_malloc_missed(heap, size);
    }
    if (size != 0)
        return pm_system_malloc(size); /* past the pools: glibc's, one call away */
    return pm_malloc_slow(size);
}
/* A pool size rounded up to a pool alignment is a class (still a pool
 * size), whose blocks are all aligned to it (BLOCK, POOL, ARENA above). */
_Static_assert(PM_SMALL_MAX % PM_POOL_ALIGN_MAX == 0, "rounding keeps a pool size");
static inline size_t pm_aligned_size(size_t alignment, size_t size)
{
    return (size + alignment - 1) & ~(alignment - 1);
}
/* Whether pm_aligned_fast takes `alignment`: a power of two from 8 to
 * PM_POOL_ALIGN_MAX. */
static inline bool pm_aligned_in_pools(size_t alignment)
{
    return pm_is_power_of_two(alignment) && alignment >= sizeof(void *) &&
           alignment <= PM_POOL_ALIGN_MAX;
}
/* An aligned request's fast path (posix_memalign, memalign, aligned_alloc,
 * aligned new), for an alignment pm_aligned_in_pools takes and `size`
 * 1..PM_SMALL_MAX (tested before it is rounded, which could wrap): malloc's
 * fast path for the rounded size, or NULL. Inline, as malloc's: through
 * the general path, posix_memalign of 64 bytes took 65 instructions a step
 * more than malloc (bench/results/outside-probes-entry-points.md). */
static inline void *pm_aligned_fast(size_t alignment, size_t size)
{
    if (size - 1 >= PM_SMALL_MAX)
        return NULL;
    return pm_heap_alloc_fast(pm_thread_heap, pm_aligned_size(alignment, size));
}
/* free of a pointer outside the arena space: an arena mapped outside it,
 * glibc's, NULL. Out of line: the glibc path is a tail call away. */
PM_HIDDEN void pm_free_outside_space(void *ptr);
static inline void pm_free_inline(void *ptr)
{
    /* A NULL the compiler sees (free(NULL) inlined, as LTO does into a
     * caller) ends here, at no cost to any other call: GCC 12 cannot know
     * that the space test fails for it, and followed it to the owner's
     * load from address 0x400, with a -Wstringop-overflow warning. */
    if (__builtin_constant_p(ptr == NULL) && ptr == NULL)
        return;
    /* free never changes errno (POSIX 2024): glibc's free keeps it, and so
     * does every system call poolmalloc makes (pm_os_*). NULL is tested
     * only off the pools' path: the space never holds address 0. */
    if (PM_LIKELY(pm_arena_space_contains(ptr)))
        pm_heap_free_fast(ptr); /* I13: readable, in an arena or not */
    else
        pm_free_outside_space(ptr);
}

/* ---- fork handling (heap.c); the preload shim registers them. ------------- */
PM_HIDDEN void pm_fork_prepare(void);
PM_HIDDEN void pm_fork_parent(void);
PM_HIDDEN void pm_fork_child(void);

/* ---- options.c ------------------------------------------------------------- */
#define PM_OPTION_FIELD_PATH(field) char field[PM_OPTION_PATH_MAX];
#define PM_OPTION_FIELD_COUNT(field) uint64_t field;
#define PM_OPTION_FIELD_DURATION(field) uint64_t field;
#define PM_OPTION_FIELD_FORMAT(field) pm_stats_format_t field;
#define PM_OPTION_FIELD_SIGNAL(field) int field;
#define PM_OPTION_FIELD(field, env, kind, def, min, max, help) PM_OPTION_FIELD_##kind(field)
typedef struct pm_options {
    PM_OPTIONS(PM_OPTION_FIELD)
} pm_options_t;

PM_HIDDEN extern pm_options_t pm_options;
PM_HIDDEN void pm_options_init(void);

/* ---- stats.c --------------------------------------------------------------- */
/* Why a snapshot was taken; named in every record. */
typedef enum pm_snapshot_reason {
    PM_SNAPSHOT_INTERVAL, PM_SNAPSHOT_SIGNAL, PM_SNAPSHOT_API, PM_SNAPSHOT_EXIT,
} pm_snapshot_reason_t;

/* One snapshot to the configured sink (POOLMALLOC_STATS, "%p" expanded), in
 * the configured format, with one write; warns on stderr if it cannot.
 * Returns 0 or -1. */
PM_HIDDEN int pm_stats_write_snapshot(pm_snapshot_reason_t reason);
/* Uptime in the records counts from here (the preload constructor). */
PM_HIDDEN void pm_stats_note_start(void);
/* The report lock serializes snapshots; held across fork (pm_fork_*). */
PM_HIDDEN void pm_stats_lock(void);
PM_HIDDEN void pm_stats_unlock(void);
/* The UTC calendar date of day `days` since 1970-01-01 (proleptic
 * Gregorian). The records' time stamps use it, not gmtime_r, which takes
 * glibc's time-zone lock and, the first time, allocates: the dump thread
 * would hold that lock now and then, and a child forked at that moment
 * would wait for it forever at its first localtime(). */
PM_HIDDEN void pm_utc_date(int64_t days, int64_t *year, int *month, int *day);

/* ---- dump.c: the dump thread ------------------------------------------------- */
/* Starts the thread that writes a snapshot every POOLMALLOC_STATS_INTERVAL
 * and on POOLMALLOC_STATS_SIGNAL, if POOLMALLOC_STATS is set, and ticks the
 * purges of an idle process; with POOLMALLOC_PURGE_THREAD=1 alone, the
 * same thread ticks the purges only. Idempotent. */
PM_HIDDEN void pm_dump_start(void);
/* In a fork child: the thread did not survive the fork. Another starts
 * when the child first takes a pool or gives one back (heap.c), through
 * pm_dump_start_if_pending: a child that execs or exits before that, as
 * most do, never pays for one (dump.c). */
PM_HIDDEN void pm_dump_restart_in_child(void);
PM_HIDDEN extern bool pm_dump_start_pending; /* accessed atomically */
PM_HIDDEN void pm_dump_start_pending_thread(void);
static inline void pm_dump_start_if_pending(void)
{
    if (PM_UNLIKELY(__atomic_load_n(&pm_dump_start_pending, __ATOMIC_RELAXED)))
        pm_dump_start_pending_thread();
}
/* The calling thread has just changed its credentials with one of glibc's
 * setuid() family: the dump thread, which glibc does not know of, takes
 * the same before this returns. */
PM_HIDDEN void pm_dump_follow_credentials(void);
/* Before a call the kernel refuses to a process of more than one thread:
 * stops the dump thread, if it runs, until pm_dump_resume, which is given
 * what this returned and starts it again. Pauses and credential changes
 * wait for each other. errno untouched. */
PM_HIDDEN bool pm_dump_pause(void);
PM_HIDDEN void pm_dump_resume(bool paused);

#endif /* POOLMALLOC_INTERNAL_H */
