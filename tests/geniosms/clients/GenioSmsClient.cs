// What GenioSms's published C# sample (GenioApi.cs, GenioSms/geniosms) does, written
// again for the capture: WebClient.UploadString with the joined, unencoded parameters.
// Usage: mono GenioSmsClient.exe URL TO MSG API_KEY
using System;
using System.Net;

namespace GenioSmsCapture
{
    class Program
    {
        static void Main(string[] args)
        {
            WebClient client = new WebClient();
            client.Encoding = System.Text.Encoding.UTF8;
            client.Headers.Add("Content-Type", "application/x-www-form-urlencoded");
            client.Headers.Add("user-agent", "GenioSmsBot/1.0 (+http://api.geniosms.net)");
            String param = "to=" + args[1] + "&msg=" + args[2] + "&api=" + args[3];
            // Any answer but 2xx throws WebException here, uncaught, as in the sample.
            String response = client.UploadString(args[0], "POST", param);
            Console.WriteLine(response);
        }
    }
}
