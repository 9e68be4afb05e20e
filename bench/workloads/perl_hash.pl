# A real program's allocations: perl (Debian's) building a hash of N keys,
# each holding an array of a number and a string of 0..39 bytes, then
# deleting a third of them and sorting what is left. Debian's perl is built
# without perl's own malloc: its strings, hash keys and arrays' storage are
# malloc'd one by one, its SV heads and bodies in arenas of about 4 KiB.
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
