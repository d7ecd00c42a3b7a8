#!/usr/bin/perl
# What GenioSms's published Perl proxy (sendSms.pl, GenioSms/geniosms) does, written
# again for the capture: a CGI script that reads `to` and `msg` and forwards them by
# interpolating them into the API's URL.
# Usage: QUERY_STRING='to=…&msg=…' REQUEST_METHOD=GET API_URL=… API_KEY=… perl genio_proxy.pl
use strict;
use warnings;
use CGI;
use LWP::UserAgent;

my $q = CGI->new;
my $to = $q->param("to") // "";
my $msg = $q->param("msg") // "";
print "Content-type: text/html\n\n";
if ($to ne "" && $msg ne "") {
    my $url = "$ENV{API_URL}?to=$to&msg=$msg&api=$ENV{API_KEY}";
    my $agent = LWP::UserAgent->new;
    $agent->timeout(20);
    $agent->agent('GenioSmsBot/1.0 (+http://api.geniosms.net)');
    my $request = HTTP::Request->new('GET', $url);
    $request->content_encoding("UTF-8");
    my $response = $agent->request($request);
    print $response->content;
}
