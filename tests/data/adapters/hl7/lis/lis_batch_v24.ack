MSH|^~\&|HR-ADAPTER|REGION|LIS|HOSP_A|20251112110000+0800||ACK^R01^ACK|ACK20251112110000000001|P|2.4
MSA|AA|B24-0001

MSH|^~\&|HR-ADAPTER|REGION|LIS|HOSP_A|20251112110000+0800||ACK^R01^ACK|ACK20251112110000000002|P|2.4
MSA|AE|B24-0002|OBX-3: add a code-map row system,code,item for UA — local code 'UA' (尿酸) is not|||103^OBX-3: add a code-map row system,code,item for UA — local code 'UA' (尿酸) is not in the code map (item - declares a test that is not a recognized item)^HL70357
ERR|OBX^1^3^103&OBX-3: add a code-map row system,code,item for UA — local co&HL70357
