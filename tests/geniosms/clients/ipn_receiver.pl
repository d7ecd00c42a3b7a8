#!/usr/bin/perl
# What GenioSms's published Perl IPN receiver (ipn.pl, GenioSms/geniosms) does, written
# again for the test: a CGI script that reads the ten IPN fields with CGI.pm and prints
# them as one line (the sample also appends that line to a log file).
use strict;
use warnings;
use CGI;

my $q = CGI->new;
my @names = qw(status status_code id_smsout request_code pin custom ipn_type to from msg);
my $all = join(" ", map { "$_=" . ($q->param($_) // "") } @names) . "\n";
print "Content-type:text/html\n\n";
print $all;
