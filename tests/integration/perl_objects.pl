#!/usr/bin/perl
# perl_objects.pl — an allocation-heavy Perl workload with deterministic
# output, run by perl.sh plain and under poolmalloc: blessed objects in a
# graph, hashes of arrays, closures, regex captures and substitutions,
# sorts with comparators, string building, deletion and rebuilding.
# Never prints anything that depends on addresses, hash order or time.
use strict;
use warnings;

my $scale = shift // 1;

# Our own generator: rand() depends on the platform's drand48 and seeding.
my $seed = 20240601;
sub rnd {
    my ($m) = @_;
    $seed = ($seed * 69069 + 1) % 4294967296;
    return int($seed / 65536) % $m;
}

my @syllables = qw(ka lo mi ne ru sa ti vo we xu ya zo qua bri st);
sub word {
    my $n = 1 + rnd(4);
    return join '', map { $syllables[rnd(scalar @syllables)] } 1 .. $n;
}

package Node {
    my $count = 0;
    sub new {
        my ($class, %args) = @_;
        $count++;
        return bless { id => $args{id}, name => $args{name}, tags => [], edges => {},
                       weight => $args{weight} // 0 }, $class;
    }
    sub link_to {
        my ($self, $other, $w) = @_;
        $self->{edges}{ $other->{id} } = $w;
        return $self;
    }
    sub tag { my ($self, @t) = @_; push @{ $self->{tags} }, @t; return $self }
    sub describe {
        my ($self) = @_;
        my @e = sort { $a <=> $b } keys %{ $self->{edges} };
        return sprintf "%s#%d[%s]{%s}", $self->{name}, $self->{id},
            join(',', sort @{ $self->{tags} }), join(',', map { "$_:$self->{edges}{$_}" } @e);
    }
    sub DESTROY { $count-- }
    sub live { $count }
}

package Account {
    our @ISA = ('Node');
    sub new {
        my ($class, %args) = @_;
        my $self = Node::new($class, %args);
        $self->{ledger} = [];
        return $self;
    }
    sub post {
        my ($self, $amount, $memo) = @_;
        push @{ $self->{ledger} }, { amount => $amount, memo => $memo };
        $self->{weight} += $amount;
    }
}

package main;

# A strong checksum would need Digest::*; the builtin 32-bit sum is enough
# to catch a corrupted string, and needs no module.
sub sum32 { return unpack('%32C*', $_[0]) }

my $total_sections = 0;
sub section {
    my ($title, @lines) = @_;
    $total_sections++;
    print "== $title\n";
    print "  $_\n" for @lines;
}

for my $round (1 .. 3 * $scale) {
    # ---- a graph of objects --------------------------------------------------
    my @nodes;
    for my $i (0 .. 3999) {
        my $class = $i % 5 == 0 ? 'Account' : 'Node';
        my $n = $class->new(id => $i, name => word(), weight => rnd(100));
        $n->tag(map { word() } 1 .. rnd(4));
        push @nodes, $n;
    }
    for my $n (@nodes) {
        $n->link_to($nodes[ rnd(scalar @nodes) ], rnd(1000)) for 1 .. 1 + rnd(6);
        if ($n->isa('Account')) {
            $n->post(rnd(500) - 250, "memo " . word()) for 1 .. rnd(10);
        }
    }
    my %by_name;
    push @{ $by_name{ $_->{name} } }, $_ for @nodes;
    my @popular = sort { @{ $by_name{$b} } <=> @{ $by_name{$a} } or $a cmp $b } keys %by_name;
    my @heavy = sort { $b->{weight} <=> $a->{weight} or $a->{id} <=> $b->{id} } @nodes;
    my $degree = 0;
    $degree += keys %{ $_->{edges} } for @nodes;
    my $desc = join "\n", map { $_->describe } @nodes;
    section("round $round graph",
        "nodes " . scalar(@nodes) . " live " . Node::live() . " degree $degree",
        "names " . scalar(keys %by_name) . " top " . join(' ', @popular[0 .. 4]),
        "heaviest " . join(' ', map { "$_->{name}#$_->{id}=$_->{weight}" } @heavy[0 .. 4]),
        "describe length " . length($desc) . " sum " . sum32($desc));

    # ---- text processing: regexes, substitutions, split/join -----------------
    my @lines = map {
        sprintf "%05d %-12s %s=%d; %s", $_, word(), word(), rnd(100000), join('/', map { word() } 1 .. rnd(5))
    } 1 .. 20000;
    my (%kv, $matched);
    for (@lines) {
        if (/^(\d+)\s+(\w+)\s+(\w+)=(\d+);\s*(.*)$/) {
            $matched++;
            $kv{$3} += $4;
            my $path = $5;
            $path =~ s{(\w+)/}{uc($1) . '|'}ge;
        }
    }
    my $text = join "\n", @lines;
    (my $vowelless = $text) =~ tr/aeiou//d;
    my @words = split /[^a-z]+/, $text;
    my %freq;
    $freq{$_}++ for grep { length } @words;
    my @common = (sort { $freq{$b} <=> $freq{$a} or $a cmp $b } keys %freq)[0 .. 7];
    section("round $round text",
        "matched $matched keys " . scalar(keys %kv) . " sum " . eval { my $s = 0; $s += $_ for values %kv; $s },
        "vowelless " . length($vowelless) . " sum " . sum32($vowelless),
        "words " . scalar(@words) . " distinct " . scalar(keys %freq),
        "common " . join(' ', map { "$_=$freq{$_}" } @common));

    # ---- closures, nested structures, churn ------------------------------------
    my @counters = map { my $c = $_; sub { $c += $_[0]; $c } } 1 .. 500;
    my $acc = 0;
    for my $k (1 .. 20) { $acc += $_->($k) for @counters }
    my %tree;
    for my $i (1 .. 30000) {
        my @path = map { word() } 1 .. 3;
        my $leaf = \%tree;
        $leaf = ($leaf->{$_} //= {}) for @path[0 .. 1];
        push @{ $leaf->{ $path[2] } }, $i;
    }
    my $leaves = 0;
    for my $a1 (keys %tree) { for my $a2 (keys %{ $tree{$a1} }) { $leaves += keys %{ $tree{$a1}{$a2} } } }
    # Delete half the graph, then drop the rest, and check every DESTROY ran.
    splice(@nodes, 0, 2000);
    %by_name = ();
    @heavy = ();
    my $half_live = Node::live();
    section("round $round churn",
        "closures $acc leaves $leaves top " . scalar(keys %tree),
        "after splice: live $half_live");
    @nodes = ();
    # Cycles are none (edges hold ids), so everything is freed now.
    print "  after clear: live " . Node::live() . "\n";

    # ---- string building -------------------------------------------------------
    my $s = '';
    $s .= sprintf("%x:%s;", $_ * 2654435761 % 4294967296, word()) for 1 .. 50000;
    my $rev = reverse $s;
    my @chunks = unpack('(A37)*', $s);
    section("round $round strings",
        "length " . length($s) . " sum " . sum32($s) . " rev " . sum32($rev),
        "chunks " . scalar(@chunks) . " sorted first " . (sort @chunks)[0]);
}
print "sections $total_sections\n";
