# A real program's allocations: perl (Debian's) building a hash of N keys,
# each holding a two-element array (an SV, an AV and a string a key), then
# deleting a third of them and sorting what is left: perl allocates every
# SV body, hash entry and short string through malloc.
#   perl bench/workloads/perl_hash.pl N
use strict;
use warnings;

my $n = shift // 400_000;
my %h;
$h{"key$_"} = [$_, "v" x ($_ % 40)] for 1 .. $n;
my $chars = 0;
for my $k (keys %h) {
    $chars += length $h{$k}[1];
    delete $h{$k} if $h{$k}[0] % 3 == 0;
}
my @sorted = sort keys %h;
print scalar(@sorted), " keys left, $chars chars, first $sorted[0], last $sorted[-1]\n";
